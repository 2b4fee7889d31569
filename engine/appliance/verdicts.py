"""Verification: did each response come back to the core that owns its session?

Both execution paths (``System.run_trace`` and ``engine.paths.batch.run_batch``) end in
the same per-flow ``FlowOutcome`` rows and the same ``Summary``, so a report
reads the same whichever path produced it. The one verdict vocabulary every surface
uses (CLI, HTML report, lab, API):

* ``symmetric`` — the response was processed on its owner core directly;
* ``handed-off`` — it landed on another core and reached its owner by forwarding (any
  policy; ``rules.FORWARDING_ROUTES``), at a cost of ``copies`` packet copies over
  ``hops`` core-to-core hops;
* ``refused`` — no fitting free port could be allocated, or the service cannot take the
  flow at all (``rules.not_served``: an IPv6 flow under nat or usip): the request was
  refused, with the reason;
* ``asymmetric`` — it was processed on a core that does not own the session, or lost,
  with the reason: forwarding is off (route ``none``), or reassembly dropped the
  request's or the response's fragments (its limits), so it never reached a packet
  engine.

Rates divide by every flow the scenario asked for (``Summary.symmetric_rate``), and a
run without checks passes only when it has flows and none is refused or asymmetric
(``clean_pass``).

Fragmented traffic (``engine.appliance.fragments``) adds a note per fragmented direction in
front of the reason (``fragment_note``), saying how its fragments were steered.

    >>> summary = summarize(cores=2, request_core=[0, 1], response_core=[0, 0],
    ...                     verdict=["symmetric", "handed-off"], copies=[0, 1])
    >>> summary.symmetric_rate, summary.handoff_copies, summary.core_load
    (0.5, 1, [3, 2])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

from engine.packet.model import FlowTuple

VERDICTS = ("symmetric", "handed-off", "asymmetric", "refused")
#: Verdict → small integer code, as the batch path stores it.
VERDICT_CODE = {name: code for code, name in enumerate(VERDICTS)}


def fragment_note(direction: str, *, fragments: int, mode: str, action: str | None,
                  received_on: int, core: int, by_owner: bool = False) -> str:
    """How a fragmented ``direction`` (``request`` or ``response``) datagram of
    ``fragments`` fragments reached ``core``: hashed on its addresses only
    (``ms-2tuple``), or held on ``received_on`` (its 2-tuple core, or the default
    fragment core) until the L4 header, then sent with ``action`` to the connection's
    owner (``by_owner``: a packet engine holds the connection, seed L64) or the core its
    4-tuple hashes to."""
    if mode == "ms-2tuple":
        return (f"{direction} in {fragments} fragments hashed on the addresses only "
                f"(ms-2tuple) -> core {core}")
    where = "default fragment core" if mode == "default-core" else "core"
    chose = "the connection's owner" if by_owner else "4-tuple hash"
    return (f"{direction} in {fragments} fragments held on {where} {received_on} until the "
            f"L4 header ({mode}), {chose} -> core {core}, {action}")


def fragment_drop_note(direction: str, *, fragments: int, reason: str) -> str:
    """Why a fragmented datagram never reached a packet engine (``reason``: the
    reassembler's drop reason, e.g. ``too-many-fragments``)."""
    return f"{direction} in {fragments} fragments dropped by reassembly ({reason})"


def distributor_note(direction: str, *, received_on: int, core: int, why: str,
                     via: str, copies: int) -> str:
    """How the flow distributor moved a ``direction`` packet off the core that received
    it (``why``: the rule's text, or ``hash``), by route ``via`` at ``copies`` copies."""
    return (f"{direction} received on core {received_on}, moved by the distributor to core "
            f"{core} ({why}; {via}, {copies} {'copy' if copies == 1 else 'copies'})")


def misdirected_note(*, landed: int, owner: int, forwarded: bool, via: str,
                     copies: int) -> str:
    """A request that reached core ``landed`` while core ``owner`` holds an open session
    of its tuple: forwarded there by the correct-core check (seed L650-L672), or
    processed where it landed (the check off, or forwarding off) as a second session."""
    if forwarded:
        return (f"request reached core {landed}, its session is core {owner}'s: the "
                f"correct-core check forwarded it ({via}, {copies} "
                f"{'copy' if copies == 1 else 'copies'})")
    return (f"request reached core {landed}, its session is core {owner}'s: processed on "
            f"core {landed} unchecked, a second session")


def verdict_reason(verdict: str, *, request_core: int, response_core: int | None,
                   policy: str, via: str = "", copies: int = 0, hops: int = 1,
                   notes: tuple[str, ...] = (), by_addresses: bool = False,
                   dropped: str = "", refusal: str = "", checked: bool = True,
                   addresses_only: bool = False) -> str:
    """The one-line explanation both paths give for a verdict.

    ``notes`` (``fragment_note`` texts) go first, joined by ``; ``. ``by_addresses``:
    the response's core was chosen by its addresses alone (fragments under
    ``ms-2tuple``), so a rewritten port did not choose it. ``dropped`` is the
    ``fragment_drop_note`` of an ``asymmetric`` flow lost in reassembly; ``refusal``
    why a ``refused`` flow was not served (``rules.not_served``; default: no port).
    ``checked`` False: the correct-core check is off, so a misdirected response is
    processed where it landed, without its session. ``addresses_only``: the NIC hashes
    the flow's response on its addresses alone (``Nic.addresses_only``), so no port
    steered it: nat's chosen IP did, or, for usip, nothing did.
    """
    if verdict == "symmetric":
        if by_addresses:
            base = (f"response landed on core {response_core}, the request's core, by the "
                    f"hash of its addresses alone (no port was hashed)")
        elif policy == "transparent":
            base = f"response hashed to core {response_core}, the request's core"
        elif addresses_only and policy == "nat":
            base = (f"nat: the chosen IP makes the response, hashed on its addresses alone, "
                    f"land on core {response_core}, the request's core")
        elif addresses_only:
            base = (f"{policy}: the response, hashed on its addresses alone (no port can "
                    f"steer it), landed on core {response_core}, the request's core")
        else:
            base = (f"{policy}: the rewritten port makes the response hash to core "
                    f"{response_core}, the request's core")
    elif verdict == "handed-off":
        route = "" if hops == 1 else f", {hops} hops"
        base = (f"response landed on core {response_core}, owner is core {request_core}: "
                f"moved by {via} ({copies} {'copy' if copies == 1 else 'copies'}{route})")
    elif verdict == "asymmetric" and dropped:
        base = f"{dropped}: it never reached a packet engine; lost"
    elif verdict == "asymmetric" and not checked:
        base = (f"{policy}: response landed on core {response_core}, owner is core "
                f"{request_core}, and the correct-core check is off: processed there "
                f"without its session, lost")
    elif verdict == "asymmetric":
        base = (f"{policy}: response landed on core {response_core}, owner is core "
                f"{request_core}, and forwarding is off (route none): response lost")
    elif refusal:
        base = f"{refusal}: request refused on core {request_core}"
    else:
        base = f"no fitting free port on core {request_core}: request refused"
    return "; ".join((*notes, base)) if notes else base


class PortChoice(NamedTuple):
    """A flow's port allocation as its row shows it."""

    local_ip: str
    port: int
    table: int
    tries: int


#: the row's allocation fields of a flow that holds no allocation
NO_PORT = (None, -1, -1, 0)


class FragmentSide(NamedTuple):
    """One direction's fragments as its row shows them (0: not fragmented)."""

    fragments: int = 0
    action: str | None = None
    rule: str | None = None


UNFRAGMENTED = FragmentSide()


class FlowSteering(NamedTuple):
    """What the flow distributor and the correct-core check did to a flow's packets:
    ``distributor_forwards`` packets (request, response: 0-2) moved off the core that
    received them at ``distributor_copies`` copies; ``misdirected`` ``forwarded`` (the
    request reached a core other than its session's owner and the correct-core check
    forwarded it, ``check_copies`` copies) or ``processed`` (it was processed where it
    landed), ``""`` when the request reached its owner."""

    distributor_forwards: int = 0
    distributor_copies: int = 0
    misdirected: str = ""
    check_copies: int = 0


NOT_STEERED = FlowSteering()


def outcome_row(*, flow: int, request: str, request_core: int, rewritten: str | None,
                port: PortChoice | None, response_core: int | None, verdict: str,
                copies: int, reason: str, response_side: FragmentSide = UNFRAGMENTED,
                request_side: FragmentSide = UNFRAGMENTED, fragment_messages: int = 0,
                fragment_copies: int = 0, hops: int = 0, steering: FlowSteering | None = None
                ) -> dict:
    """The one layout of a flow's row: ``FlowOutcome.as_dict`` and the batch path's
    fast row streaming both call it, so a report reads the same either way."""
    local_ip, local_port, table, tries = NO_PORT if port is None else port
    return {"flow": flow, "request": request, "request_core": request_core,
            "rewritten": rewritten, "local_ip": local_ip, "local_port": local_port,
            "table": table, "tries": tries, "response_core": response_core,
            "verdict": verdict, "copies": copies, "hops": hops, "reason": reason,
            "fragments": response_side.fragments,
            "fragment_action": response_side.action,
            "fragment_rule": response_side.rule,
            "request_fragments": request_side.fragments,
            "request_fragment_action": request_side.action,
            "request_fragment_rule": request_side.rule,
            "fragment_messages": fragment_messages, "fragment_copies": fragment_copies,
            **(steering or NOT_STEERED)._asdict()}


@dataclass(frozen=True, slots=True)
class FlowOutcome:
    """One flow's verification row.

    ``request`` is the tuple as the client sent it; ``rewritten`` the tuple as sent
    to the server (``None`` when the request was refused). ``local_ip``/``local_port``
    /``table``/``tries`` describe the port allocation (``None``/``-1``/``0`` without
    one). ``response_core`` is the core the NIC steered the response to (``None``
    when there was no response). ``copies`` counts handoff packet copies and ``hops``
    the core-to-core hops that forwarding took.

    Fragments (``engine.appliance.fragments``): ``fragments`` / ``request_fragments`` count the
    response's / request's fragments (0: not fragmented); ``fragment_action`` /
    ``request_fragment_action`` are ``assemble`` or ``bridge`` (``None`` when not
    fragmented or under ``ms-2tuple``, which decides no action) and ``*_rule`` the
    patent rule that chose it. ``fragment_messages`` counts action messages to a
    destination core and ``fragment_copies`` the core-to-core copies (a reassembled
    packet moved, Assemble; each fragment moved, Bridge) of the flow's delivered
    datagrams, both directions (duplicates and dropped datagrams not included).
    """

    flow: int
    request: FlowTuple
    request_core: int
    rewritten: FlowTuple | None
    local_ip: str | None
    local_port: int
    table: int
    tries: int
    response_core: int | None
    verdict: str
    copies: int
    reason: str
    fragments: int = 0
    fragment_action: str | None = None
    fragment_rule: str | None = None
    request_fragments: int = 0
    request_fragment_action: str | None = None
    request_fragment_rule: str | None = None
    fragment_messages: int = 0
    fragment_copies: int = 0
    hops: int = 0
    distributor_forwards: int = 0
    distributor_copies: int = 0
    misdirected: str = ""
    check_copies: int = 0

    def key(self) -> tuple:
        """The fields both paths must agree on (the reason text included)."""
        return (self.flow, self.request_core, self.local_ip, self.local_port, self.table,
                self.tries, self.response_core, self.verdict, self.copies, self.reason,
                None if self.rewritten is None else str(self.rewritten), self.fragments,
                self.fragment_action, self.fragment_rule, self.request_fragments,
                self.request_fragment_action, self.request_fragment_rule,
                self.fragment_messages, self.fragment_copies, self.hops,
                self.distributor_forwards, self.distributor_copies, self.misdirected,
                self.check_copies)

    @classmethod
    def build(cls, *, flow: int, request: FlowTuple, request_core: int,
              rewritten: FlowTuple | None, port: PortChoice | None,
              response_core: int | None, verdict: str, copies: int, reason: str,
              response_side: FragmentSide = UNFRAGMENTED,
              request_side: FragmentSide = UNFRAGMENTED, fragment_messages: int = 0,
              fragment_copies: int = 0, hops: int = 0,
              steering: FlowSteering = NOT_STEERED) -> FlowOutcome:
        """A flow's row from what either path knows of it (``port`` ``None``: no
        allocation; the fragment costs are both directions' sums)."""
        local_ip, local_port, table, tries = NO_PORT if port is None else port
        return cls(flow=flow, request=request, request_core=request_core,
                   rewritten=rewritten, local_ip=local_ip, local_port=local_port,
                   table=table, tries=tries, response_core=response_core, verdict=verdict,
                   copies=copies, reason=reason, fragments=response_side.fragments,
                   fragment_action=response_side.action, fragment_rule=response_side.rule,
                   request_fragments=request_side.fragments,
                   request_fragment_action=request_side.action,
                   request_fragment_rule=request_side.rule,
                   fragment_messages=fragment_messages, fragment_copies=fragment_copies,
                   hops=hops, **steering._asdict())

    def as_dict(self) -> dict:
        port = (None if self.local_ip is None else
                PortChoice(self.local_ip, self.local_port, self.table, self.tries))
        return outcome_row(
            flow=self.flow, request=str(self.request), request_core=self.request_core,
            rewritten=None if self.rewritten is None else str(self.rewritten), port=port,
            response_core=self.response_core, verdict=self.verdict, copies=self.copies,
            reason=self.reason,
            response_side=FragmentSide(self.fragments, self.fragment_action,
                                       self.fragment_rule),
            request_side=FragmentSide(self.request_fragments, self.request_fragment_action,
                                      self.request_fragment_rule),
            fragment_messages=self.fragment_messages, fragment_copies=self.fragment_copies,
            hops=self.hops, steering=FlowSteering(self.distributor_forwards,
                                             self.distributor_copies, self.misdirected,
                                             self.check_copies))


def count_distinct(values) -> int:
    """Distinct values of a uint32 array, by sorting (NumPy's default sort is SIMD
    accelerated: twenty times faster here than its radix-based stable sort)."""
    ordered = np.sort(np.asarray(values, dtype=np.uint32))
    if ordered.size == 0:
        return 0
    return 1 + int(np.count_nonzero(ordered[1:] != ordered[:-1]))


def jain_index(load) -> float:
    """Jain's fairness index (Σx)² / (n·Σx²): 1.0 when every core carries the same
    load, 1/n when one core carries all of it; 1.0 for no load at all."""
    values = np.asarray(load, dtype=float)
    square_sum = float((values ** 2).sum())
    if values.size == 0 or square_sum == 0.0:
        return 1.0
    return float(values.sum() ** 2 / (values.size * square_sum))


@dataclass(frozen=True, slots=True)
class Summary:
    """The run at a glance.

    ``core_load[c]`` counts the packets core c handled: requests steered to it,
    responses steered to it, and responses handed to it by another core.
    ``occupancy[c]`` is the fraction of core c's port-table entries taken at the end of
    the run (every session has ended then, so 0, unless a trace stopped its clock early
    with ``until_us``); ``occupancy_peak[c]`` the most entries its sessions held at once
    during the run, over the capacity of the tables used by the end (``port_capacity``). Both paths
    report both figures for the same moments. ``distinct_hashes`` counts distinct 32-bit
    RSS hashes over requests and responses: a symmetric key gives a request and its
    response the same hash and at most 65,536 values overall — its distribution cost.

    Fragments: ``fragmented`` counts fragmented datagrams (requests and responses),
    ``assembled`` / ``bridged`` those given each action (``ms-2tuple`` decides none),
    ``fragment_messages`` / ``fragment_copies`` sum the flows' core-to-core costs (see
    ``FlowOutcome``), ``fragments_dropped`` counts flows lost because reassembly dropped
    a datagram (their verdict is ``asymmetric``), and ``fragment_drops`` the
    reassemblers' drops by reason — in the trace every drop record (``duplicate``,
    ``already-dropped``, evictions, timeouts included), in the batch path only the
    datagrams it predicts lost (it models no duplicates).

    ``not_served`` counts the refused flows that no service could take, by reason
    (``rules.not_served``: an IPv6 flow under nat or usip); they are in ``refused``.

    IP choice: ``ip_choice`` counts the nat flows whose response the NIC hashes on its
    addresses alone (no port can steer it; nat chooses its IP), ``ip_steered`` those of
    them whose response came back to its core because of the IP chosen; the rest were
    forwarded (or, with forwarding off, lost).
    """

    flows: int
    symmetric: int
    handed_off: int
    asymmetric: int
    refused: int
    symmetric_rate: float
    handoff_copies: int
    handoff_hops: int
    core_load: list[int]
    fairness: float
    occupancy: list[float] = field(default_factory=list)
    occupancy_peak: list[float] = field(default_factory=list)
    distinct_hashes: int = 0
    key: str = ""
    port_map: str = ""
    handoffs_per_core: list[int] = field(default_factory=list)
    fragments_dropped: int = 0
    fragmented: int = 0
    assembled: int = 0
    bridged: int = 0
    fragment_messages: int = 0
    fragment_copies: int = 0
    fragment_drops: dict[str, int] = field(default_factory=dict)
    not_served: dict[str, int] = field(default_factory=dict)
    distributor_forwards: int = 0
    distributor_copies: int = 0
    check_forwards: int = 0
    check_copies: int = 0
    misdirected_processed: int = 0
    ip_choice: int = 0
    ip_steered: int = 0
    #: ``ip_steered / ip_choice`` (0.0 when no flow needed an IP choice)
    ip_steered_share: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """A short human-readable form for the terminal."""
        return [
            f"flows {self.flows}: symmetric {self.symmetric}, handed off {self.handed_off} "
            f"({self.handoff_copies} copies, {self.handoff_hops} hops), refused {self.refused}, "
            f"asymmetric {self.asymmetric}",
            f"symmetric rate {self.symmetric_rate:.4f}; per-core load {self.core_load}; "
            f"Jain fairness {self.fairness:.4f}; distinct hashes {self.distinct_hashes}",
        ] + ([
            f"fragmented datagrams {self.fragmented}: assembled {self.assembled}, bridged "
            f"{self.bridged}; core-to-core fragment messages {self.fragment_messages}, "
            f"copies {self.fragment_copies}; flows lost in reassembly "
            f"{self.fragments_dropped}; drops {self.fragment_drops or 'none'}"]
            if self.fragmented else []) + [
            f"{reason}: {count} refused"
            for reason, count in self.not_served.items()] + ([
            f"flow distributor: {self.distributor_forwards} packets moved off their "
            f"receiving core ({self.distributor_copies} copies); correct-core check: "
            f"{self.check_forwards} misdirected requests forwarded to their owner "
            f"({self.check_copies} copies), {self.misdirected_processed} processed where "
            f"they landed"]
            if self.distributor_forwards or self.check_forwards
            or self.misdirected_processed else []) + (
            [self.ip_choice_line()] if self.ip_choice else [])

    def ip_choice_line(self) -> str:
        """The IP-choice figure in words (``ip_choice`` > 0)."""
        return (f"IP choice: {self.ip_steered} of {self.ip_choice} nat flows hashed on "
                f"addresses only steered home by choosing the IP "
                f"({self.ip_steered / self.ip_choice:.1%}); the other "
                f"{self.ip_choice - self.ip_steered} forwarded to their owner")


def clean_pass(summary: Summary) -> bool:
    """How a run without checks is judged: it passes only when it has flows and none
    of them was refused or asymmetric (a run of nothing proves nothing)."""
    return summary.flows > 0 and summary.refused == 0 and summary.asymmetric == 0


def clean_pass_line(summary: Summary) -> str:
    """The one-line result of a run without checks (``clean_pass``)."""
    if clean_pass(summary):
        return (f"PASS: no checks, and all {summary.flows} flows came back to their owner "
                f"core ({summary.symmetric} symmetric, {summary.handed_off} handed off)")
    if not summary.flows:
        return "FAIL: no checks, and no flows ran"
    return (f"FAIL: no checks, and of {summary.flows} flows {summary.refused} were refused "
            f"and {summary.asymmetric} asymmetric")


def summarize(*, cores: int, request_core, response_core, verdict, copies, hops=None,
              hashes=None, occupancy=(), occupancy_peak=(), key: str = "",
              port_map: str = "", fragment_figures: dict | None = None,
              not_served: dict[str, int] | None = None,
              steering_figures: dict | None = None, ip_choice=None) -> Summary:
    """A ``Summary`` from per-flow columns (lists or arrays of equal length).

    ``response_core`` uses -1 (or ``None``) for no response; ``verdict`` holds names
    or ``VERDICT_CODE`` integers; ``hashes`` is every RSS hash seen (uint32, any
    length) or ``None``; ``fragment_figures`` the ``Summary`` fragment fields
    (``fragmented`` ... ``fragment_drops``, ``fragments_dropped``); ``not_served`` the
    refused flows no service could take, by reason; ``steering_figures`` the
    distributor and correct-core check fields (``steering_figures``); ``ip_choice``
    (bool per flow, or ``None``) marks the nat flows hashed on addresses only.

    ``symmetric_rate`` divides by every flow, refused ones included: a run that could
    not serve a flow never reads as fully symmetric (0.0 for no flows at all).
    """
    request_core = np.asarray(request_core, dtype=np.int64)
    response_core = np.asarray([-1 if c is None else c for c in response_core]
                               if isinstance(response_core, list) else response_core,
                               dtype=np.int64)
    verdict = np.asarray(verdict)
    if verdict.dtype.kind in "US":
        verdict = np.array([VERDICT_CODE[str(v)] for v in verdict], dtype=np.int8)
    verdict = verdict.astype(np.int8)
    copies = np.asarray(copies, dtype=np.int64)
    counts = np.bincount(verdict, minlength=len(VERDICTS))
    flows = int(request_core.size)
    load = np.bincount(request_core, minlength=cores)[:cores]
    answered = response_core >= 0
    load = load + np.bincount(response_core[answered], minlength=cores)[:cores]
    handed = verdict == VERDICT_CODE["handed-off"]
    received = np.bincount(request_core[handed], minlength=cores)[:cores]
    load = load + received
    distinct = 0 if hashes is None else count_distinct(hashes)
    chose = (np.zeros(flows, bool) if ip_choice is None
             else np.asarray(ip_choice, dtype=bool).reshape(flows))
    steered = int((chose & (verdict == VERDICT_CODE["symmetric"])).sum())
    return Summary(
        flows=flows, symmetric=int(counts[0]), handed_off=int(counts[1]),
        asymmetric=int(counts[VERDICT_CODE["asymmetric"]]),
        refused=int(counts[VERDICT_CODE["refused"]]),
        symmetric_rate=float(counts[0] / flows) if flows else 0.0,
        handoff_copies=int(copies.sum()),
        handoff_hops=0 if hops is None else int(np.asarray(hops, dtype=np.int64).sum()),
        core_load=[int(x) for x in load],
        fairness=jain_index(load), occupancy=[float(x) for x in occupancy],
        occupancy_peak=[float(x) for x in occupancy_peak],
        distinct_hashes=distinct, key=key, port_map=port_map,
        handoffs_per_core=[int(x) for x in received],
        not_served=dict(sorted((not_served or {}).items())),
        ip_choice=int(chose.sum()), ip_steered=steered,
        ip_steered_share=steered / int(chose.sum()) if chose.any() else 0.0,
        **(fragment_figures or {}), **(steering_figures or {}))


def steering_figures(*, distributor_forwards, distributor_copies, misdirected,
                     check_copies) -> dict:
    """The ``Summary`` distributor / correct-core check fields from per-flow columns
    (``misdirected``: ``forwarded`` / ``processed`` / ``""`` per flow)."""
    misdirected = list(misdirected)
    return {"distributor_forwards": int(np.sum(distributor_forwards)),
            "distributor_copies": int(np.sum(distributor_copies)),
            "check_forwards": misdirected.count("forwarded"),
            "check_copies": int(np.sum(check_copies)),
            "misdirected_processed": misdirected.count("processed")}


def fragment_figures(*, actions, messages, copies, drops: dict[str, int],
                     flows_lost: int) -> dict:
    """The ``Summary`` fragment fields from ``actions`` (one entry per fragmented
    datagram: ``assemble``, ``bridge``, or ``None`` when no action was decided or the
    datagram was dropped), per-flow ``messages`` and ``copies`` (sums), ``drops``, and
    ``flows_lost`` (flows whose datagram reassembly dropped)."""
    actions = list(actions)
    return {"fragments_dropped": int(flows_lost),
            "fragmented": len(actions), "assembled": actions.count("assemble"),
            "bridged": actions.count("bridge"), "fragment_messages": int(sum(messages)),
            "fragment_copies": int(sum(copies)), "fragment_drops": dict(sorted(drops.items()))}


def summarize_outcomes(outcomes: list[FlowOutcome], *, cores: int, hashes=None,
                       occupancy=(), occupancy_peak=(), key: str = "", port_map: str = "",
                       fragment_drops: dict[str, int] | None = None,
                       flows_lost: int = 0,
                       not_served: dict[str, int] | None = None,
                       ip_choice=None) -> Summary:
    """``summarize`` over trace rows (``fragment_drops``: the reassemblers' drops by
    reason during the run; ``flows_lost``: flows lost in reassembly; ``not_served``: as
    ``summarize``)."""
    actions = [o.request_fragment_action for o in outcomes if o.request_fragments] + [
        o.fragment_action for o in outcomes if o.fragments]
    figures = fragment_figures(actions=actions,
                               messages=[o.fragment_messages for o in outcomes],
                               copies=[o.fragment_copies for o in outcomes],
                               drops=fragment_drops or {}, flows_lost=flows_lost)
    return summarize(cores=cores, request_core=[o.request_core for o in outcomes],
                     response_core=[o.response_core for o in outcomes],
                     verdict=[o.verdict for o in outcomes] or np.zeros(0, np.int8),
                     copies=[o.copies for o in outcomes], hops=[o.hops for o in outcomes],
                     hashes=hashes,
                     occupancy=occupancy, occupancy_peak=occupancy_peak, key=key,
                     port_map=port_map,
                     fragment_figures=figures, not_served=not_served,
                     steering_figures=steering_figures(
                         distributor_forwards=[o.distributor_forwards for o in outcomes],
                         distributor_copies=[o.distributor_copies for o in outcomes],
                         misdirected=[o.misdirected for o in outcomes],
                         check_copies=[o.check_copies for o in outcomes]),
                     ip_choice=ip_choice)
