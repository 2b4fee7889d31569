"""The ``checks`` section: conditions on a run's summary that decide pass or fail.

A check is ``metric: "OP VALUE"`` (or a list of such strings for one metric), e.g.
``symmetric_rate: ">= 1.0"``, ``handed_off: "== 0"``, ``fairness: [">= 0.9", "<= 1"]``.
OP is one of ``== != >= <= > <``; a value may end in ``%`` (``">= 100%"`` is
``">= 1.0"``); a bare number means ``==``. Metrics are the keys of the verification
report's summary (``METRICS``)::

    >>> parse_check(">= 99.5%")
    ('>=', 0.995)
    >>> [(r.name, r.passed) for r in evaluate_checks({"handed_off": "== 0"}, {"handed_off": 2})]
    [('handed_off == 0', False)]

``parse_check`` also validates the schema's check values; ``evaluate_checks`` runs them
once a run has its summary.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import Problem, ScenarioError, shown

#: Older names a check may still use for a metric (scenario files written before the
#: verdict vocabulary settled on "refused" keep working).
METRIC_ALIASES = {"allocation_failures": "refused"}
#: Summary metrics a check may name (the keys of the verification report's summary).
METRICS = ("flows", "symmetric", "handed_off", "refused", "asymmetric",
           "symmetric_rate", "handoff_copies", "fairness", "distinct_hashes",
           "fragmented", "assembled", "bridged", "fragment_messages", "fragment_copies",
           "fragments_dropped", "distributor_forwards", "distributor_copies",
           "check_forwards", "check_copies", "misdirected_processed", *METRIC_ALIASES)

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
    ">": operator.gt, "<": operator.lt,
}
_CHECK_RE = re.compile(r"^\s*(==|!=|>=|<=|>|<)?\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
                       r"\s*(%?)\s*$")


def parse_check(text: str | int | float) -> tuple[str, float]:
    """``">= 99.5%"`` → (">=", 0.995); a bare number means ``==``. ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"expected a condition like '>= 0.9', got {shown(text)}")
    if isinstance(text, int | float):
        try:
            number = float(text)
        except OverflowError:  # an integer past 1.8e308
            number = math.inf
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {shown(text)}")
        return "==", number
    match = _CHECK_RE.match(text)
    if match is None:
        raise ValueError(f"expected a condition OP VALUE with OP one of "
                         f"{', '.join(OPERATORS)} (e.g. '>= 0.9' or '== 0'), got {shown(text)}")
    op, number, percent = match.group(1) or "==", float(match.group(2)), match.group(3)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {shown(text)}")
    return op, number / 100 if percent else number


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check against a run's summary. ``actual`` is ``None`` when the summary lacks
    the metric (the check then fails)."""

    name: str
    metric: str
    op: str
    expected: float
    actual: float | None
    passed: bool

    def as_dict(self) -> dict:
        return {"name": self.name, "metric": self.metric, "op": self.op,
                "expected": self.expected, "actual": self.actual, "passed": self.passed}


def evaluate_checks(checks: dict[str, Any], summary: dict[str, Any]) -> list[CheckResult]:
    """Each condition of ``checks`` (a scenario's ``checks`` mapping) against ``summary``
    (the report summary: flows, symmetric, handed_off, refused, asymmetric,
    symmetric_rate, handoff_copies, fairness, ...; ``METRIC_ALIASES`` map older names).
    Rates are fractions 0–1. Equality of rates allows a relative error of 1e-9
    (``symmetric_rate == 1`` on a float ratio).

    Raises ScenarioError for a malformed condition (a loaded scenario never has one).
    """
    results = []
    problems = []
    for metric, spec in checks.items():
        for index, condition in enumerate(spec if isinstance(spec, list) else [spec]):
            try:
                op, expected = parse_check(condition)
            except ValueError as error:
                problems.append(Problem(f"checks.{metric}", None, str(error)))
                continue
            raw = summary.get(METRIC_ALIASES.get(metric, metric))
            actual = None if raw is None or isinstance(raw, bool) else float(raw)
            if actual is None:
                passed = False
            elif op in ("==", "!=") or math.isclose(actual, expected, rel_tol=1e-9):
                equal = math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12)
                passed = {"==": equal, "!=": not equal, ">=": True, "<=": True,
                          ">": False, "<": False}[op]
            else:
                passed = OPERATORS[op](actual, expected)
            suffix = f"[{index}]" if isinstance(spec, list) else ""
            results.append(CheckResult(f"{metric}{suffix} {op} {expected:g}", metric, op,
                                       expected, actual, passed))
    if problems:
        raise ScenarioError("checks", problems)
    return results

