"""Verification: did each response come back to the core that owns its session?

Both execution paths (``System.run_trace`` and ``engine.batch.run_batch``) end in
the same per-flow ``FlowOutcome`` rows and the same ``Summary``, so a report
reads the same whichever path produced it. Verdicts:

* ``symmetric`` — the response was steered to the core that handled the request;
* ``handed-off`` — it landed on another core and was moved to the owner
  (transparent mode), at a cost of ``copies`` packet copies;
* ``asymmetric`` — it landed on a core that does not own the session and the
  system has no handoff for it (``nat``/``usip`` never hand off: their port
  choice is supposed to make this impossible, so the response is lost);
* ``allocation-failed`` — no fitting free port: the request was refused.

    >>> summary = summarize(cores=2, request_core=[0, 1], response_core=[0, 0],
    ...                     verdict=["symmetric", "handed-off"], copies=[0, 1])
    >>> summary.symmetric_rate, summary.handoff_copies, summary.core_load
    (0.5, 1, [3, 2])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .packet import FlowTuple

VERDICTS = ("symmetric", "handed-off", "asymmetric", "allocation-failed")
#: Verdict → small integer code, as the batch path stores it.
VERDICT_CODE = {name: code for code, name in enumerate(VERDICTS)}


def verdict_reason(verdict: str, *, request_core: int, response_core: int | None,
                   policy: str, via: str = "", copies: int = 0) -> str:
    """The one-line explanation both paths give for a verdict."""
    if verdict == "symmetric":
        if policy == "transparent":
            return f"response hashed to core {response_core}, the request's core"
        return (f"{policy}: the rewritten port makes the response hash to core "
                f"{response_core}, the request's core")
    if verdict == "handed-off":
        return (f"response landed on core {response_core}, owner is core {request_core}: "
                f"moved by {via} ({copies} {'copy' if copies == 1 else 'copies'})")
    if verdict == "asymmetric":
        if policy == "transparent":
            return (f"response landed on core {response_core}, owner is core {request_core}, "
                    f"and the system has no handoff: response lost")
        return (f"{policy}: response landed on core {response_core}, not the request's core "
                f"{request_core}; no session there: response lost")
    return f"no fitting free port on core {request_core}: request refused"


@dataclass(frozen=True, slots=True)
class FlowOutcome:
    """One flow's verification row.

    ``request`` is the tuple as the client sent it; ``rewritten`` the tuple as sent
    to the server (``None`` when the request was refused). ``local_ip``/``local_port``
    /``table``/``tries`` describe the port allocation (``None``/``-1``/``0`` without
    one). ``response_core`` is the core the NIC steered the response to (``None``
    when there was no response). ``copies`` counts handoff packet copies.
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

    def key(self) -> tuple:
        """The fields both paths must agree on (the reason text included)."""
        return (self.flow, self.request_core, self.local_ip, self.local_port, self.table,
                self.tries, self.response_core, self.verdict, self.copies, self.reason,
                None if self.rewritten is None else str(self.rewritten))

    def as_dict(self) -> dict:
        return {"flow": self.flow, "request": str(self.request),
                "request_core": self.request_core,
                "rewritten": None if self.rewritten is None else str(self.rewritten),
                "local_ip": self.local_ip, "local_port": self.local_port,
                "table": self.table, "tries": self.tries,
                "response_core": self.response_core, "verdict": self.verdict,
                "copies": self.copies, "reason": self.reason}


def count_distinct(values) -> int:
    """Distinct values of a uint32 array (by sorting: faster than np.unique's hashing)."""
    ordered = np.sort(np.asarray(values, dtype=np.uint32), kind="stable")
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
    ``occupancy[c]`` is the fraction of core c's port-table entries taken when the
    summary was made. ``distinct_hashes`` counts distinct 32-bit RSS hashes over
    requests and responses: a symmetric key gives a request and its response the same
    hash and at most 65,536 values overall — its distribution cost.
    """

    flows: int
    symmetric: int
    handed_off: int
    asymmetric: int
    allocation_failures: int
    symmetric_rate: float
    handoff_copies: int
    core_load: list[int]
    fairness: float
    occupancy: list[float] = field(default_factory=list)
    distinct_hashes: int = 0
    key: str = ""
    port_map: str = ""
    handoffs_per_core: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """A short human-readable form for the terminal."""
        return [
            f"flows {self.flows}: symmetric {self.symmetric}, handed off {self.handed_off} "
            f"({self.handoff_copies} copies), asymmetric {self.asymmetric}, "
            f"allocation failures {self.allocation_failures}",
            f"symmetric rate {self.symmetric_rate:.4f}; per-core load {self.core_load}; "
            f"Jain fairness {self.fairness:.4f}; distinct hashes {self.distinct_hashes}",
        ]


def summarize(*, cores: int, request_core, response_core, verdict, copies,
              hashes=None, occupancy=(), key: str = "", port_map: str = "") -> Summary:
    """A ``Summary`` from per-flow columns (lists or arrays of equal length).

    ``response_core`` uses -1 (or ``None``) for no response; ``verdict`` holds names
    or ``VERDICT_CODE`` integers; ``hashes`` is every RSS hash seen (uint32, any
    length) or ``None``.
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
    responded = flows - int(counts[VERDICT_CODE["allocation-failed"]])
    distinct = 0 if hashes is None else count_distinct(hashes)
    return Summary(
        flows=flows, symmetric=int(counts[0]), handed_off=int(counts[1]),
        asymmetric=int(counts[2]), allocation_failures=int(counts[3]),
        symmetric_rate=float(counts[0] / responded) if responded else 1.0,
        handoff_copies=int(copies.sum()), core_load=[int(x) for x in load],
        fairness=jain_index(load), occupancy=[float(x) for x in occupancy],
        distinct_hashes=distinct, key=key, port_map=port_map,
        handoffs_per_core=[int(x) for x in received])


def summarize_outcomes(outcomes: list[FlowOutcome], *, cores: int, hashes=None,
                       occupancy=(), key: str = "", port_map: str = "") -> Summary:
    """``summarize`` over trace rows."""
    return summarize(cores=cores, request_core=[o.request_core for o in outcomes],
                     response_core=[o.response_core for o in outcomes],
                     verdict=[o.verdict for o in outcomes] or np.zeros(0, np.int8),
                     copies=[o.copies for o in outcomes], hashes=hashes,
                     occupancy=occupancy, key=key, port_map=port_map)
