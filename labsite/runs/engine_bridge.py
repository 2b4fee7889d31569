"""The one place the web platform calls the engine. THIS BODY IS A STAND-IN.

The real engine (``engine/``: scenario loading, trace and batch runs) replaces the body of
this module; the interface below is all the rest of ``labsite`` relies on.

Interface
---------
``iter_run(scenario_body: str, *, mode: str, seed: int, progress: Callable[[float], None])
-> EngineRun``

- ``scenario_body`` — the stored scenario text (YAML or JSON).
- ``mode`` — ``"trace"`` (packet by packet, every event) or ``"batch"`` (vectorised; few or
  no per-packet events, same summary).
- ``seed`` — the run's seed; the same body, mode and seed give the same events.
- ``progress(fraction)`` — call with 0.0 … 1.0 as the run advances (may be called from
  inside a long batch computation; it must be cheap and never blocks).
- Bad input raises ``labsite.runs.errors.RunInputError`` or ``engine.errors.RssLabError``;
  the message is shown to the user as the run's failure reason.

``EngineRun`` is iterable (each item one event, in order) and has ``summary()``, valid once
the iteration is exhausted (``RuntimeError`` before).

Event (a JSON-ready dict; extra keys are allowed and passed to the browser untouched)::

    {"seq": 0,            # 0, 1, 2 … strictly increasing, no gaps
     "t_us": 4.2,         # virtual time in microseconds
     "kind": "hashed",    # arrived | hashed | steered | rewritten | port_allocated |
                          # forwarded | delivered | response | verdict | …
     "flow": 3,           # flow index, or None for system events
     "core": 1,           # core index, or None
     "detail": {...}}     # kind-specific fields (hash, bucket, before/after tuples, …)

Summary (``summary()``)::

    {"engine": "stand-in",                        # who produced it
     "totals": {"flows": 8, "events": 96, "symmetric": 6, "handed_off": 1,
                "asymmetric": 1, "per_core": {"0": 24, "1": 24, ...}},
     "flows": [{"flow": 0, "verdict": "symmetric",     # symmetric | handed_off | asymmetric
                "request_core": 1, "response_core": 1, "reason": "..."}, ...]}

Stand-in scenario fields (only this stand-in reads them): ``cores`` (1–64), ``flows``
(1–100000), ``packets_per_flow`` (1–64), ``delay_ms`` (0–1000, sleep per event so a run can
be watched or a worker killed mid-run), ``fail_at`` (raise at that event seq, to test the
failure path).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

import yaml

from labsite.runs.errors import RunInputError

MODES = ("trace", "batch")
_KINDS = ("arrived", "hashed", "steered", "delivered")


def _int_field(spec: dict, name: str, default: int, low: int, high: int) -> int:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RunInputError(f"{name}: expected an integer {low}–{high}, got {value!r}")
    return value


class EngineRun:
    """A run in progress: iterate for events, then ask for the summary."""

    def __init__(self, spec: dict, *, mode: str, seed: int, progress: Callable[[float], None]):
        self._cores = _int_field(spec, "cores", 4, 1, 64)
        self._flows = _int_field(spec, "flows", 8, 1, 100_000)
        self._packets = _int_field(spec, "packets_per_flow", 4, 1, 64)
        self._delay = _int_field(spec, "delay_ms", 0, 0, 1000) / 1000
        self._fail_at = spec.get("fail_at")
        self._mode = mode
        self._rng = random.Random(seed)
        self._progress = progress
        self._summary: dict | None = None

    def __iter__(self) -> Iterator[dict]:
        flows, per_core, seq = [], {}, 0
        total = self._flows * self._packets * len(_KINDS)
        for flow in range(self._flows):
            request_core = self._rng.randrange(self._cores)
            # One flow in eight is steered elsewhere, so verdicts are not all alike.
            response_core = (request_core if self._rng.random() >= 0.125
                             else self._rng.randrange(self._cores))
            for packet in range(self._packets):
                for kind in _KINDS:
                    core = request_core if packet % 2 == 0 else response_core
                    per_core[str(core)] = per_core.get(str(core), 0) + 1
                    if seq == self._fail_at:
                        raise RuntimeError(f"stand-in failure injected at event {seq}")
                    if self._mode == "trace":
                        yield {"seq": seq, "t_us": round(seq * 0.1, 1), "kind": kind,
                               "flow": flow, "core": core,
                               "detail": {"packet": packet, "direction":
                                          "request" if packet % 2 == 0 else "response"}}
                    seq += 1
                    if self._delay:
                        time.sleep(self._delay)
                self._progress(seq / total)
            verdict = ("symmetric" if request_core == response_core
                       else self._rng.choice(["handed_off", "asymmetric"]))
            flows.append({"flow": flow, "verdict": verdict, "request_core": request_core,
                          "response_core": response_core,
                          "reason": f"request on core {request_core}, "
                                    f"response on core {response_core}"})
        counts = {v: sum(f["verdict"] == v for f in flows)
                  for v in ("symmetric", "handed_off", "asymmetric")}
        self._summary = {"engine": "stand-in",
                         "totals": {"flows": len(flows), "events": seq, **counts,
                                    "per_core": per_core},
                         "flows": flows}

    def summary(self) -> dict:
        if self._summary is None:
            raise RuntimeError("summary(): the run's events have not all been read yet")
        return self._summary


def iter_run(scenario_body: str, *, mode: str, seed: int,
             progress: Callable[[float], None]) -> EngineRun:
    """Start a run of ``scenario_body``; see the module docstring for the contract."""
    if mode not in MODES:
        raise RunInputError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    try:
        spec = yaml.safe_load(scenario_body)
    except yaml.YAMLError as exc:
        raise RunInputError(f"scenario: expected YAML or JSON, got a syntax error ({exc})") \
            from exc
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise RunInputError(f"scenario: expected a mapping, got {type(spec).__name__}")
    return EngineRun(spec, mode=mode, seed=seed, progress=progress)
