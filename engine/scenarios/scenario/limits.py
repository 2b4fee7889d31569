"""The schema version and the limits (``MAX_*``) on what a scenario file may ask for.

They bound a file's size and shape (read before parsing), each list's length and each
count, so a scenario uploaded to the web lab cannot exhaust a worker. Both the parser
(``document``) and the schema (``schema``) read them.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

#: A scenario file larger than this is refused before parsing (bytes).
MAX_FILE_BYTES = 1 << 20
#: Nesting depth and node count (aliases expanded) of the parsed document.
MAX_DEPTH = 32
MAX_NODES = 200_000
MAX_IPS_PER_CORE = 16
MAX_TABLES_PER_IP = 256
MAX_SERVICES = 256
MAX_SERVERS_PER_SERVICE = 1024
MAX_TRAFFIC_SOURCES = 16
#: Flows listed one by one in the file (use ``generated`` for more).
MAX_EXPLICIT_FLOWS = 10_000
#: Flows one ``generated`` source, and all traffic sources together, may ask for.
MAX_GENERATED_FLOWS = 5_000_000
MAX_ADVERSARIAL_FLOWS = 1_000_000
MAX_CLIENT_PREFIXES = 64
#: The highest generated flow rate (flows per second of virtual time); a start time and a
#: hold are at most ``MAX_TIME_US``.
MAX_RATE_PER_S = 1_000_000_000
MAX_CHECKS = 64
#: Flow distributor rules (each is checked against every packet, in order).
MAX_DISTRIBUTOR_RULES = 64
#: The latest virtual time a file may name (an hour, in microseconds).
MAX_TIME_US = 3_600_000_000
MAX_TEXT = 4096
