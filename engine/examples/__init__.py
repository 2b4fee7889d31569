"""Example scenarios shipped with the lab (``python -m engine examples`` lists them).

Each ``*.yaml`` file here is a complete scenario with checks; ``replay.pcap`` is the
capture the ``pcap-replay`` example replays (regenerate it with
``python -m engine.examples.replay``)::

    >>> [info.name for info in list_examples()][:3]
    ['adversarial-flood', 'correct-core-check', 'distributor-rules']
    >>> load_example("nat-microsoft").services[0].policy
    'nat'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import ScenarioError
from engine.scenarios.scenario import Scenario, load_scenario_file

EXAMPLES_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class ExampleInfo:
    """An example's ``name`` (its file stem, also its scenario name), a one-line
    ``title`` (the description's first sentence) and its file ``path``."""

    name: str
    title: str
    path: Path


def list_examples() -> list[ExampleInfo]:
    """Every example, sorted by name. Raises ScenarioError if a shipped file is broken."""
    infos = []
    for path in sorted(EXAMPLES_DIR.glob("*.yaml"), key=lambda p: p.stem):
        scenario = load_scenario_file(path)
        first = scenario.description.split(". ")[0].rstrip(".")
        infos.append(ExampleInfo(path.stem, first, path))
    return infos


def load_example(name: str) -> Scenario:
    """The example called ``name`` (see ``list_examples``); ScenarioError names the
    known examples when there is none by that name."""
    path = EXAMPLES_DIR / f"{name}.yaml"
    if "/" in name or "\\" in name or not path.is_file():
        known = ", ".join(p.stem for p in sorted(EXAMPLES_DIR.glob("*.yaml")))
        raise ScenarioError("example", [_unknown(name, known)])
    return load_scenario_file(path)


def _unknown(name: str, known: str):
    from engine.errors import Problem
    return Problem("name", None, f"expected one of {known}, got {name!r}")


__all__ = ["EXAMPLES_DIR", "ExampleInfo", "list_examples", "load_example"]
