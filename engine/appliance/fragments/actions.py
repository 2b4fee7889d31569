"""The patent's fragmentation action: Assemble or Bridge a fragmented datagram.

Once the first fragment's L4 header is found, the core decides what to do with the
datagram: **Assemble** (reassemble it, then move the whole packet to the core its
4-tuple hashes to) or **Bridge** (forward the fragments one by one). ``decide_action``
is the patent's rule list over what the packet engines' lookups found
(``SessionFacts``)::

    >>> decide_action(proto=6, pcb_hit=True, natpcb_hit=False, assemble_flag=False,
    ...               service_is_udp=None, rnat=False).action
    'assemble'
    >>> decide_action(proto=17, pcb_hit=True, natpcb_hit=False, assemble_flag=False,
    ...               service_is_udp=None, rnat=False).rule
    'UDP: no NAT PCB with the assemble flag, no non-UDP service -> Bridge'
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ConfigError
from engine.packet.model import Proto

ASSEMBLE, BRIDGE = "assemble", "bridge"


@dataclass(frozen=True, slots=True)
class ActionDecision:
    """The fragmentation action (``assemble`` or ``bridge``) and the rule that chose it."""

    action: str
    rule: str


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What the packet engines' lookups found for a fragmented datagram's 4-tuple.

    ``service_is_udp`` is ``None`` when the traffic hits no configured service (or
    packet engine), else whether that service's type is UDP. ``owner`` is the core whose
    packet engine established the connection (``None``: none has): the patent's rule on
    the core holding the fragments directs them there (seed L64, L702).
    """

    pcb_hit: bool = False
    natpcb_hit: bool = False
    assemble_flag: bool = False
    service_is_udp: bool | None = None
    rnat: bool = False
    owner: int | None = None


def decide_action(*, proto: int, pcb_hit: bool, natpcb_hit: bool, assemble_flag: bool,
                  service_is_udp: bool | None, rnat: bool,
                  forced: str | None = None) -> ActionDecision:
    """The patent's fragmentation-action rules, first match wins.

    TCP: a PCB hit, a NAT PCB hit with the Assemble Packet flag set, a configured
    service whose type is not UDP, or RNAT traffic → Assemble; otherwise Bridge.
    UDP: a NAT PCB hit with the flag set, or a configured non-UDP service → Assemble;
    otherwise Bridge (a PCB hit or RNAT does not count for UDP). Other protocols carry
    neither header, so the rules do not apply: Bridge. ``forced`` (``assemble`` or
    ``bridge``, by configuration) overrides all. Raises ConfigError for another
    ``forced`` value.
    """
    if forced is not None:
        if forced not in (ASSEMBLE, BRIDGE):
            raise ConfigError("forced", "assemble, bridge or None", forced)
        return ActionDecision(forced, f"forced by configuration: {forced.title()}")
    non_udp_service = service_is_udp is False
    if proto == Proto.TCP:
        if pcb_hit:
            return ActionDecision(ASSEMBLE, "TCP: the traffic hits a PCB -> Assemble")
        if natpcb_hit and assemble_flag:
            return ActionDecision(ASSEMBLE, "TCP: NAT PCB with the assemble flag -> Assemble")
        if non_udp_service:
            return ActionDecision(ASSEMBLE, "TCP: configured service is not UDP -> Assemble")
        if rnat:
            return ActionDecision(ASSEMBLE, "TCP: RNAT traffic -> Assemble")
        return ActionDecision(BRIDGE, "TCP: no PCB, no NAT PCB with the assemble flag, "
                              "no non-UDP service, not RNAT -> Bridge")
    if proto == Proto.UDP:
        if natpcb_hit and assemble_flag:
            return ActionDecision(ASSEMBLE, "UDP: NAT PCB with the assemble flag -> Assemble")
        if non_udp_service:
            return ActionDecision(ASSEMBLE, "UDP: configured service is not UDP -> Assemble")
        return ActionDecision(BRIDGE, "UDP: no NAT PCB with the assemble flag, "
                              "no non-UDP service -> Bridge")
    return ActionDecision(BRIDGE, f"protocol {proto}: neither TCP nor UDP, the rules do "
                          "not apply -> Bridge")
