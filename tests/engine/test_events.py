"""The event registry: every Event subclass in the engine is in EVENT_KINDS under a kind of
its own, and each survives its JSON form (what the web lab receives) unchanged."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import types
import typing
from pathlib import Path

import pytest

import engine.appliance.events as events
from engine.appliance.events import EVENT_KINDS, FRAGMENT_EVENT_KINDS, Event
from engine.packet.model import FlowTuple

ENGINE = Path(__file__).resolve().parents[2] / "engine"


def _base_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _event_classes_in_source() -> dict[str, list[str]]:
    """Every class under engine/ that derives from Event, directly or through another
    one (by name, read from the source: no module needs importing), -> where it is."""
    bases: dict[str, set[str]] = {}
    where: dict[str, list[str]] = {}
    for path in ENGINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases.setdefault(node.name, set()).update(
                    name for name in map(_base_name, node.bases) if name)
                where.setdefault(node.name, []).append(
                    f"{path.relative_to(ENGINE.parent)}:{node.lineno}")
    found, grew = {"Event"}, True
    while grew:
        more = {name for name, parents in bases.items() if parents & found} - found
        found |= more
        grew = bool(more)
    return {name: where[name] for name in found - {"Event"}}


def test_every_event_class_in_the_engine_is_registered():
    registered = {cls.__name__ for cls in EVENT_KINDS.values()}
    missing = {name: places for name, places in _event_classes_in_source().items()
               if name not in registered}
    assert missing == {}


def test_the_registry_is_exactly_the_event_classes_of_the_events_module():
    defined = {value for value in vars(events).values()
               if inspect.isclass(value) and issubclass(value, Event) and value is not Event}
    assert set(EVENT_KINDS.values()) == defined
    assert all(kind == cls.kind for kind, cls in EVENT_KINDS.items())
    assert FRAGMENT_EVENT_KINDS.items() <= EVENT_KINDS.items()


def test_kinds_are_unique():
    kinds = [cls.kind for cls in EVENT_KINDS.values()]
    assert len(kinds) == len(set(kinds)) == len(EVENT_KINDS)
    classes = _event_classes_in_source()
    assert len(classes) == len(EVENT_KINDS), classes  # no two classes share a name
    assert "event" not in EVENT_KINDS  # the base's placeholder kind is no kind


# ---- the JSON form


def _tuple_from_text(text: str) -> FlowTuple:
    """Read back ``str(FlowTuple)``: ``udp 10.0.0.2:53 -> 10.0.0.1:40000``, IPv6 ends in
    brackets when they have a port, ends without a port as a bare address."""
    proto, source, arrow, destination = text.split(" ")
    assert arrow == "->"

    def end(part: str) -> tuple[str, int | None]:
        if part.startswith("["):
            address, _, port = part[1:].partition("]:")
            return address, int(port)
        if "." in part and ":" in part:
            address, _, port = part.rpartition(":")
            return address, int(port)
        return part, None

    (src, sport), (dst, dport) = end(source), end(destination)
    return FlowTuple.of(src, dst, sport, dport, proto)


SAMPLE_TUPLES = [
    FlowTuple.of("10.0.0.2", "10.0.0.1", 53, 40000, "udp"),
    FlowTuple.of("2001:db8::2", "2001:db8::1", 443, 50000, "tcp"),
    FlowTuple.of("2001:db8::2", "2001:db8::1", None, None, "icmpv6"),
    FlowTuple.of("198.51.100.7", "192.0.2.9", None, None, 132),
]


def _field_types(cls: type[Event]) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    return {spec.name: hints[spec.name] for spec in dataclasses.fields(cls)}


def _sample(cls: type[Event], variant: int) -> Event:
    """An instance with a distinct value in every field; odd variants set every field
    that may be ``None`` to ``None``."""
    values = {}
    for number, (name, hint) in enumerate(_field_types(cls).items()):
        arms = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if type(None) in arms and variant % 2:
            values[name] = None
            continue
        kind = next(arm for arm in arms if arm is not type(None))
        if kind is FlowTuple:
            values[name] = SAMPLE_TUPLES[(number + variant) % len(SAMPLE_TUPLES)]
        elif kind is bool:
            values[name] = bool((number + variant) % 2)
        elif kind is int:
            values[name] = 1000 * variant + number
        elif kind is str:
            values[name] = f"{name} {variant}"
        else:
            raise AssertionError(f"{cls.__name__}.{name}: no sample for {hint}")
    return cls(**values)


def _from_json(data: dict) -> Event:
    """The event a JSON form describes: its kind names the class, its tuples are text."""
    cls = EVENT_KINDS[data["kind"]]
    fields = _field_types(cls)
    assert list(data) == ["kind", *fields]
    return cls(**{name: _tuple_from_text(data[name])
                  if fields[name] is FlowTuple and data[name] is not None else data[name]
                  for name in fields})


@pytest.mark.parametrize("kind", sorted(EVENT_KINDS))
@pytest.mark.parametrize("variant", [0, 1, 2, 3])
def test_each_kind_round_trips_through_its_json_form(kind, variant):
    event = _sample(EVENT_KINDS[kind], variant)
    data = event.as_dict()
    assert data["kind"] == kind
    text = json.dumps(data)
    assert json.loads(text) == data
    assert _from_json(json.loads(text)) == event

