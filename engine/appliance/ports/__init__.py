"""Port allocation tables and the two port-choice strategies (``scan`` and ``solve``).

A packet engine that rewrites a client's port must pick one whose *response*
comes back to its own core. The response arrives as (src = server IP, dst =
local IP, sport = server port, dport = PORT) and the NIC hashes it as it
arrives. Toeplitz is linear over GF(2), so::

    hash(response) = hash(same tuple with PORT = 0)  XOR  contribution(PORT)

and the low ``hash_bits`` bits of ``contribution(PORT)`` — the port's *class* —
are a linear map of PORT's 16 bits: a (hash_bits x 16) binary matrix fixed by
the key (PORT is input bytes 10-11 of IPv4's 12, 34-35 of IPv6's 36). The bucket
a response lands in is ``constant XOR class(PORT)``, where ``constant`` is the
low bits of the hash with PORT = 0. ``solve`` keeps, per table, a pool of free
ports for every class and takes one from a class that lands on the core (a
complement table, the idea of DPDK's predictable RSS, not its code); ``scan`` is
the patent's loop: next port, hash the real response tuple, check the core,
check the port is free, repeat. (The patent's text hashes the request-side tuple, the
chosen IP and port with the destination, seed L574, and calls its hash symmetric, L514:
true only for a symmetric key or transform. The lab hashes the response as it will
arrive, right for any key; ``wrong_direction`` does what the text says.) Where the
matrix is singular, some buckets are out of the port's reach: ``ResponsePortMap.describe``
says which, and the allocator then tries another IP (``nat``) or says it cannot
(``usip``)::

    >>> from engine import IndirectionTable, Key
    >>> from engine.appliance.ports import PortAllocator, ResponsePortMap
    >>> port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(4, 7))
    >>> allocator = PortAllocator(2, ["10.0.0.2"], port_map)
    >>> got = allocator.allocate(server_ip="192.0.2.10", server_port=80,
    ...                          client_ip="198.51.100.7", keep_client_ip=False)
    >>> port_map.table.buckets[got.bucket]
    2

Conventions and deviations from the first brief (read these before calling):

* Addresses may be given as text or ``ipaddress`` objects everywhere; in the
  batch path as uint32 host-order integers (``int(IPv4Address)``).
* ``direction="request"`` builds the *wrong* map (the classic bug): the port is
  placed where the request-direction tuple has it (src = local IP, dst =
  server, sport = PORT; bytes 8-9 / 32-33). ``transform`` may be ``none`` or
  ``symmetric-xor`` (still linear); ``sort`` is not linear and is refused.
* ``spread=True`` (the default): with ``x`` = client IP XOR server IP, nat tries
  the core's local IPs in cyclic order *starting at* ``(x mod 241) mod
  len(local_ips)`` and both strategies try the fitting classes starting at
  ``(x mod 251) mod (number of fitting classes)``. Two primes: every bit of ``x``
  counts, and the IP and the class are picked independently. That spreads flows
  over IPs and classes, so pools drain evenly; it is cheap because it stays within
  small integers (a multiplicative hash of ``x`` cost a tenth of an allocation).
  ``spread=False`` gives the plain order: IPs as listed, classes by ascending
  bucket. The home table of a local IP is ``h2' mod tables_per_ip`` with
  ``h2'`` the 2-tuple hash of (local IP, server IP) — in usip the local IP *is*
  the client IP, which is the patent's "hash of the client IP address and the
  destination IP address". When the home table has no fitting free port the
  next tables (cyclically) are tried.
* usip's tables are the core's, shared by all its clients ("a plurality of port
  allocation tables on each core"), keyed by ``PortAllocator.shared_ip``
  (0.0.0.0); ``Allocation.table_ip`` says so, ``local_ip`` is still the
  client's. So memory follows the configuration (cores x tables), not the
  number of clients.
* Several tables can hand out the same port number; two sessions with
  the same (local IP, server IP, server port) must not. With
  ``tables_per_ip > 1`` the allocator therefore keeps a session index and
  refuses a port that another session of the same (local IP, server IP, server
  port) holds in any table (otherwise overflowing to the next table could
  silently duplicate a response tuple).
* ``tries``: for ``solve``, the number of tables examined; for ``scan``, the
  number of candidate ports the patent's loop examines (summed over the tables
  examined). A table where the loop cannot succeed — no port class of the flow's
  constant lands on the core (the key's port matrix is singular: the rank leaves
  the core out of the port's reach), or every port of the classes that do is taken
  or closed — is refused without hashing, counting the whole range as the loop
  would (same decisions, same ``tries``); ``PortAllocator.scan_hashes`` counts the
  candidates scan really hashed (``scan_shortcut=False`` restores the full loop).
* ``scan`` and ``solve`` generally choose *different* ports from the same state:
  ``scan`` takes the next fitting free port after the table's cursor (which
  starts at the range's low end and wraps), ``solve`` takes the top of the
  first fitting class pool that has a free port. Each is identical between its
  scalar and batch versions; batch ``scan`` runs the scalar loop with the class
  trick instead of re-hashing bytes (same decisions, proven by the tests).
* ``Allocation`` also carries ``server_ip`` and ``server_port`` (needed to
  release a session of a multi-table allocator).
* ``addresses_only=True`` (the NIC hashes the response on its addresses alone,
  ``Nic.addresses_only``): no port moves the response, so every class will do and
  the bucket is the 2-tuple hash's (the constant with both ports 0: Toeplitz of
  trailing zero bytes adds nothing). nat tries its IPs whose response lands on the
  core (``PortAllocator.ip_fits``) first, then the others (the response is then
  forwarded); usip takes any free port. ``allocate_batch`` makes the same choices.
* Scalar ``solve`` with ``IPv4Address`` objects, one table per IP and no input
  transform takes a flattened path in ``allocate`` (same decisions as the general
  one, which text addresses and every other case take): the constant is the XOR of
  a cached (server IP, server port) part and a precomputed local-IP part, and the
  table's ``fitting`` entry for that constant holds the pools to try and their
  buckets. ``scan`` always hashes the real response bytes per candidate.

The package, one module per concept; each imports only the modules listed before it
(``response_map`` names ``table``'s ``PortRange`` in type hints only):

* ``response_map`` — ``ResponsePortMap``: the port classes, the GF(2) matrix and its
  rank, the constants, the fitting classes per core;
* ``table`` — ``PortAllocationTable`` (one core's ports for one local IP and table
  index: states and per-class free pools), ``PortRange``, ``PortState``;
* ``allocator`` — ``PortAllocator`` (one core's tables and strategy: scalar ``solve``
  and ``scan``, the fast path), ``Allocation``, the spread;
* ``batch`` — ``allocate_batch`` and ``release_batch``, the vectorised allocation and
  session ends of the batch path, and ``allocate_stacked``, both at once in time order;
* ``occupancy`` — ``port_occupancy`` and ``port_capacity``, the verdict's per-core figures.
"""

from engine.appliance.ports.allocator import (
    CLASS_SPREAD,
    IP_SPREAD,
    STRATEGIES,
    USIP_MEMORY_LIMIT,
    Allocation,
    PortAllocator,
    spread_mix,
    spread_mix_batch,
    usip_table_bytes,
    usip_tables_bytes,
)
from engine.appliance.ports.batch import (
    BatchAllocation,
    allocate_batch,
    allocate_stacked,
    release_batch,
)
from engine.appliance.ports.occupancy import port_capacity, port_occupancy
from engine.appliance.ports.response_map import (
    DIRECTIONS,
    PORTS,
    Address,
    ResponsePortMap,
    gf2_rank,
)
from engine.appliance.ports.table import PortAllocationTable, PortRange, PortState

__all__ = [
    "CLASS_SPREAD",
    "DIRECTIONS",
    "IP_SPREAD",
    "PORTS",
    "STRATEGIES",
    "USIP_MEMORY_LIMIT",
    "Address",
    "Allocation",
    "BatchAllocation",
    "PortAllocationTable",
    "PortAllocator",
    "PortRange",
    "PortState",
    "ResponsePortMap",
    "allocate_batch",
    "allocate_stacked",
    "gf2_rank",
    "port_capacity",
    "port_occupancy",
    "release_batch",
    "spread_mix",
    "spread_mix_batch",
    "usip_table_bytes",
    "usip_tables_bytes",
]
