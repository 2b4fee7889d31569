"""IP fragments: reassembly, steering modes, the Assemble/Bridge action, the fragmentation table.

Fragments after the first carry no ports, so a NIC cannot hash them on the 4-tuple
and they may land on a core other than their flow's. The lab models three answers
(``FragmentMode``) and the patent's fragmentation action (Assemble or Bridge)::

    >>> from engine import FlowTuple, IndirectionTable, Key, Nic, Packet
    >>> from engine.appliance.fragments import FragmentMode, FragmentSteerer, fragment_packet
    >>> nic = Nic(key=Key.microsoft(), table=IndirectionTable.round_robin(4, 7))
    >>> flow = FlowTuple.of("10.0.0.2", "10.0.0.1", 53, 40000, "udp")
    >>> pieces = fragment_packet(Packet.from_tuple(7, flow, payload=bytes(100)), 68)
    >>> len(pieces), [p.fragment.offset for p in pieces], pieces[1].sport
    (3, [0, 48, 96], None)
    >>> steerer = FragmentSteerer(nic, FragmentMode.REASSEMBLE_HEADER)
    >>> outcomes = [steerer.receive(p, now_us=10) for p in reversed(pieces)]
    >>> [o.status for o in outcomes]
    ['held', 'held', 'reassembled']
    >>> whole = outcomes[-1].deliveries[0]
    >>> whole.packet.sport, whole.packet.payload == bytes(100), whole.received_on, whole.core
    (53, True, 1, 2)

One module per part, each importing only those above it in this list:

* ``datagram`` — what one fragment says: its datagram's key, its byte range (checked on
  its own), the L4 ports of a first fragment; the reassembled bytes as a whole packet;
* ``reassembly`` — the bounded, order-independent ``Reassembler`` and its limits
  (overlap, duplicate and eviction policy);
* ``actions`` — the patent's Assemble/Bridge rules (``decide_action``, ``SessionFacts``);
* ``table`` — the patent's fragmentation table (datagram → action and core);
* ``steering`` — ``FragmentMode`` and the ``FragmentSteerer`` that takes fragments from
  the NIC to whole packets on the right core; ``fragment_outcome``, the same end
  computed directly for the batch path;
* ``crafting`` — cutting a whole packet into fragments (``fragment_packet``).

The events the steerer emits (``FragmentSteered``, ``FragmentHeld``, …) live with every
other kind in ``engine.appliance.events``; they are re-exported here, with
``FRAGMENT_EVENT_KINDS``, for the modules and tests that import them from this package.
"""

from __future__ import annotations

from engine.appliance.events import (
    FRAGMENT_EVENT_KINDS,
    ActionDecided,
    ActionSentToCore,
    Bridged,
    FragmentDropped,
    FragmentHeld,
    FragmentSteered,
    HeaderFound,
    Reassembled,
    ReassembledForwarded,
)
from engine.appliance.fragments.actions import (
    ASSEMBLE,
    BRIDGE,
    ActionDecision,
    SessionFacts,
    decide_action,
)
from engine.appliance.fragments.crafting import fragment_packet, l4_bytes
from engine.appliance.fragments.datagram import (
    MAX_DATAGRAM_BYTES,
    DatagramKey,
    check_fragment,
    datagram_key,
    fragment_length,
    header_ports,
    whole_packet,
)
from engine.appliance.fragments.reassembly import (
    Datagram,
    Drop,
    Reassembler,
    ReassemblyLimits,
    ReassemblyResult,
    ReassemblyStats,
)
from engine.appliance.fragments.steering import (
    Delivery,
    FragmentMode,
    FragmentOutcome,
    FragmentPlan,
    FragmentSteerer,
    SteererStats,
    fragment_outcome,
)
from engine.appliance.fragments.table import FragmentationTable, TableEntry

__all__ = [
    "ASSEMBLE", "BRIDGE", "MAX_DATAGRAM_BYTES", "ActionDecided", "ActionDecision",
    "ActionSentToCore", "Bridged", "Datagram", "DatagramKey", "Delivery", "Drop",
    "FRAGMENT_EVENT_KINDS", "FragmentDropped", "FragmentHeld", "FragmentMode",
    "FragmentOutcome", "FragmentPlan", "FragmentSteered", "FragmentSteerer",
    "FragmentationTable", "HeaderFound", "Reassembled", "ReassembledForwarded",
    "Reassembler", "ReassemblyLimits", "ReassemblyResult", "ReassemblyStats", "SessionFacts",
    "SteererStats", "TableEntry", "check_fragment", "datagram_key", "decide_action",
    "fragment_length", "fragment_outcome", "fragment_packet", "header_ports", "l4_bytes",
    "whole_packet",
]
