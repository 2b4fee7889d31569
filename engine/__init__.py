"""RSS Lab's engine: a pure-Python model of symmetric request/response steering.

The modules follow the glossary in DESIGN.md: ``toeplitz`` (the hash), ``nic``
(hash types, transforms, indirection table), ``distributor`` (software flow
distributor), ``packet`` (the packet model). Everything here is deterministic
given a seed and imports nothing from Django, Celery or Channels.
"""

from .distributor import FlowDistributor, Rule
from .errors import ConfigError, HashKeyError, RssLabError, TableError, TupleError
from .nic import (
    ALL_HASH_TYPES,
    HashType,
    IndirectionTable,
    Nic,
    Steering,
    Transform,
    transform_input,
)
from .packet import FlowTuple, Fragment, Packet, Proto, from_scapy, to_scapy
from .toeplitz import (
    MICROSOFT_KEY_HEX,
    SYMMETRIC_KEY_HEX,
    HashStep,
    Key,
    explain_hash,
    hash_input,
    hash_ipv4_batch,
    parse_key,
    toeplitz_hash,
    toeplitz_hash_batch,
)

__all__ = [
    "ALL_HASH_TYPES", "MICROSOFT_KEY_HEX", "SYMMETRIC_KEY_HEX",
    "ConfigError", "FlowDistributor", "FlowTuple", "Fragment", "HashKeyError", "HashStep",
    "HashType", "IndirectionTable", "Key", "Nic", "Packet", "Proto", "RssLabError", "Rule",
    "Steering", "TableError", "Transform", "TupleError",
    "explain_hash", "from_scapy", "hash_input", "hash_ipv4_batch", "parse_key", "to_scapy",
    "toeplitz_hash", "toeplitz_hash_batch", "transform_input",
]
