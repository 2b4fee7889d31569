"""The schema of exercise files: one pydantic model per part, and the JSON Schema.

An exercise file (YAML or JSON, ``schema_version: 1``) holds a ``title``, a Markdown
``prompt``, a base scenario (``scenario:`` inline, or ``example:`` naming a shipped
example, changed by ``set:``), ``parameters`` drawn per variant, and ``questions``.
Wherever a value may differ per variant, it may be written as a placeholder
``"{{name}}"`` naming a parameter (a whole value keeps the parameter's type; inside text
it is substituted as text). The models accept placeholders where the file may use them
and are validated again, placeholders substituted, for every variant.

The seven question kinds (the issue's numbering):

====  ============  =====================================================  ===========
kind  ``kind:``     what the student does                                  graded by
====  ============  =====================================================  ===========
1     ``steering``  predict a packet's hash, bucket and core                the engine's value
2     ``port``      choose a nat IP/port (usip: a port) for a core          hashing the response
3     ``settings``  choose policy/key/... so stated checks hold             running the answer
4     ``fragments`` predict each fragment's core and Assemble/Bridge        the engine's value
5     ``table``     edit the indirection table to meet a fairness target    running the answer
6     ``number``    predict a figure of a run (copies, fitting ports, ...)  the engine's value
7     ``concept``   multiple choice, or a number from the parameters        the file
====  ============  =====================================================  ===========
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.exercises.limits import (
    MAX_ATTEMPTS,
    MAX_CHOICES,
    MAX_HINTS,
    MAX_PARAMETER_RANGE,
    MAX_PARAMETERS,
    MAX_POINTS,
    MAX_PROMPT,
    MAX_QUESTIONS,
)
from engine.scenarios.scenario.checks import METRICS
from engine.scenarios.scenario.fields import CheckSpec, IPAddress, Name, Prefix, Text

#: A whole value that is one parameter: ``"{{cores}}"``.
PLACEHOLDER_PATTERN = r"^\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\}$"
Placeholder = Annotated[str, Field(pattern=PLACEHOLDER_PATTERN, max_length=70,
                                   description='a parameter, e.g. "{{core}}"')]
IntOrParam = int | Placeholder
PortOrParam = Annotated[int, Field(ge=1, le=65535)] | Placeholder
AddressOrParam = IPAddress | Placeholder
Markdown = Annotated[str, Field(max_length=MAX_PROMPT)]
Points = Annotated[float, Field(gt=0, le=MAX_POINTS)]

#: Figures a ``settings``/``table`` check or a ``number`` question may name beyond the
#: verification summary's (``METRICS``): ``client_ip_kept`` — the fraction of flows whose
#: request reached the server with the client's own IP; ``max_mean_load`` — the busiest
#: core's load over the mean; ``failed_load`` — the load of the question's failed cores.
EXTRA_METRICS = ("client_ip_kept", "max_mean_load", "failed_load")
CHECK_METRICS = tuple(METRICS) + EXTRA_METRICS

#: Settings a ``settings`` answer may change, and where each lives in the scenario.
SETTINGS = ("policy", "key", "transform", "handoff", "strategy", "tables_per_ip",
            "fragments", "fragment_action", "assemble_flag", "hash_types")

#: What a ``number`` question may ask: a summary figure of the variant's run, a
#: per-core figure (``core``), or what the control core does when ``fail_core`` fails.
QUANTITIES = ("handoff_copies", "handed_off", "symmetric", "asymmetric", "refused",
              "symmetric_rate", "distinct_hashes", "fairness", "fragmented", "assembled",
              "bridged", "fragment_messages", "fragment_copies", "fitting_ports",
              "buckets_of_core", "core_load", "control_dropped_sessions",
              "control_moved_buckets", "control_misdirected")
PER_CORE_QUANTITIES = ("fitting_ports", "buckets_of_core", "core_load")
CONTROL_QUANTITIES = ("control_dropped_sessions", "control_moved_buckets",
                      "control_misdirected")


class _Model(BaseModel):
    """A part of an exercise file: strict (no coercion), closed (no unknown keys), frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ---------------------------------------------------------------------------- parameters

class IntRange(_Model):
    """Whole numbers ``low, low + step, ..., <= high``."""

    low: int = Field(ge=-(2 ** 40), le=2 ** 40)
    high: int = Field(ge=-(2 ** 40), le=2 ** 40)
    step: int = Field(1, ge=1, le=2 ** 40)

    @model_validator(mode="after")
    def _ordered(self):
        if self.high < self.low:
            raise ValueError(f"expected high >= low, got low {self.low} and high {self.high}")
        if (self.high - self.low) // self.step + 1 > MAX_PARAMETER_RANGE:
            raise ValueError(f"expected at most {MAX_PARAMETER_RANGE} values, got "
                             f"{(self.high - self.low) // self.step + 1}")
        return self


class PortRange(_Model):
    """Ports ``low..high`` (1-65535)."""

    low: int = Field(1024, ge=1, le=65535)
    high: int = Field(65535, ge=1, le=65535)

    @model_validator(mode="after")
    def _ordered(self):
        if self.high < self.low:
            raise ValueError(f"expected high >= low, got low {self.low} and high {self.high}")
        return self


PARAMETER_KINDS = ("range", "choice", "address", "port")
Scalar = Annotated[str, Field(max_length=200)] | int | float | bool


class ParameterSpec(_Model):
    """One parameter: exactly one of ``range`` (whole numbers), ``choice`` (a list of
    values: keys, policies, sizes, ...), ``address`` (a host of a prefix) or ``port``
    (a range of ports)."""

    range: IntRange | None = None
    choice: Annotated[list[Scalar], Field(min_length=1, max_length=MAX_CHOICES)] | None = None
    address: Prefix | None = None
    port: PortRange | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        given = [name for name in PARAMETER_KINDS
                 if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("expected exactly one of range, choice, address, port, got "
                             + (", ".join(given) or "none"))
        return self

    @property
    def kind(self) -> str:
        return next(name for name in PARAMETER_KINDS if getattr(self, name) is not None)


# ---------------------------------------------------------------------------- questions

class Hint(_Model):
    """A hint the student may reveal; ``cost`` points come off the question's score."""

    text: Markdown
    cost: float = Field(0.0, ge=0, le=MAX_POINTS)


class Feedback(_Model):
    """Text shown per outcome (Markdown; placeholders substituted)."""

    correct: Markdown = "Correct."
    partial: Markdown = "Partly right."
    incorrect: Markdown = "Not right."


class _Question(_Model):
    """What every question has."""

    id: Name
    prompt: Markdown
    points: Points = 1.0
    attempts: int = Field(3, ge=1, le=MAX_ATTEMPTS,
                          description="graded attempts allowed (per question)")
    hints: list[Hint] = Field(default_factory=list, max_length=MAX_HINTS)
    feedback: Feedback = Field(default_factory=Feedback)


class PacketSpec(_Model):
    """A packet as the NIC receives it (source first, as it is hashed)."""

    src: AddressOrParam
    dst: AddressOrParam
    sport: PortOrParam | None = None
    dport: PortOrParam | None = None
    proto: Literal["tcp", "udp"] = "tcp"


class TakenPorts(_Model):
    """Ports ``low..high`` already taken (a port answer may not use them)."""

    low: PortOrParam
    high: PortOrParam


class SteeringQuestion(_Question):
    """Kind 1: predict ``ask`` (hash, bucket, core) of ``packet``, or of flow ``flow``'s
    request or response as it arrives at the NIC."""

    kind: Literal["steering"]
    packet: PacketSpec | None = None
    flow: IntOrParam | None = None
    direction: Literal["request", "response"] = "request"
    ask: list[Literal["hash", "bucket", "core"]] = Field(
        default_factory=lambda: ["hash", "bucket", "core"], min_length=1, max_length=3)

    @model_validator(mode="after")
    def _one_packet(self):
        if (self.packet is None) == (self.flow is None):
            raise ValueError("expected exactly one of packet, flow")
        if self.packet is not None and self.direction == "response":
            raise ValueError("expected direction: response only with flow (a given packet "
                             "is hashed as written)")
        return self


class PortQuestion(_Question):
    """Kind 2: for flow ``flow`` (a nat or usip service's), choose the local IP and port
    (nat) or the port (usip) so the server's response lands on ``target_core`` (the
    request's core by default); the port must be in the scenario's range and not in
    ``taken``."""

    kind: Literal["port"]
    flow: IntOrParam = 0
    target_core: IntOrParam | Literal["request-core"] = "request-core"
    taken: list[TakenPorts] = Field(default_factory=list, max_length=64)


class SettingsQuestion(_Question):
    """Kind 3: choose ``fields`` (each from its list of allowed values) so every check of
    ``checks`` holds on the variant's traffic."""

    kind: Literal["settings"]
    fields: dict[Literal[SETTINGS], Annotated[list[Scalar | list[str]],  # type: ignore[valid-type]
                                              Field(min_length=1, max_length=MAX_CHOICES)]
                 ] = Field(min_length=1, max_length=len(SETTINGS))
    checks: dict[Literal[CHECK_METRICS], CheckSpec | Annotated[  # type: ignore[valid-type]
        list[CheckSpec], Field(min_length=1, max_length=8)]] = Field(min_length=1,
                                                                     max_length=16)


class FragmentsQuestion(_Question):
    """Kind 4: for flow ``flow``'s fragmented ``direction``, predict ``ask``: the core
    each fragment lands on (in offset order), the core that processes the datagram, and
    the action (``assemble``, ``bridge``, or ``none`` when none is decided)."""

    kind: Literal["fragments"]
    flow: IntOrParam = 0
    direction: Literal["request", "response"] = "response"
    ask: list[Literal["landing_cores", "core", "action"]] = Field(
        default_factory=lambda: ["landing_cores", "core", "action"], min_length=1,
        max_length=3)


class TableQuestion(_Question):
    """Kind 5: write the indirection table (one core per bucket) so the variant's traffic
    meets ``checks`` (fairness, max_mean_load, ...); buckets must not name
    ``failed_cores`` (checked as their load being 0)."""

    kind: Literal["table"]
    checks: dict[Literal[CHECK_METRICS], CheckSpec | Annotated[  # type: ignore[valid-type]
        list[CheckSpec], Field(min_length=1, max_length=8)]] = Field(min_length=1,
                                                                     max_length=16)
    failed_cores: list[IntOrParam] = Field(default_factory=list, max_length=63)


class NumberQuestion(_Question):
    """Kind 6: predict ``quantity`` of the variant's run (``core`` for a per-core figure,
    ``fail_core`` for what the control core does when that core fails), within
    ``tolerance`` (absolute) or ``tolerance_pct`` (percent of the engine's value)."""

    kind: Literal["number"]
    quantity: Literal[QUANTITIES]  # type: ignore[valid-type]
    core: IntOrParam | None = None
    fail_core: IntOrParam | None = None
    tolerance: float = Field(0.0, ge=0, le=1e12)
    tolerance_pct: float = Field(0.0, ge=0, le=100)

    @model_validator(mode="after")
    def _needs(self):
        if self.quantity in PER_CORE_QUANTITIES and self.core is None:
            raise ValueError(f"expected core for quantity {self.quantity}")
        if self.quantity in CONTROL_QUANTITIES and self.fail_core is None:
            raise ValueError(f"expected fail_core for quantity {self.quantity}")
        return self


class Choice(_Model):
    """One option of a multiple-choice question, with the feedback it earns."""

    id: Name
    text: Markdown
    correct: bool = False
    feedback: Markdown = ""


class ConceptNumber(_Model):
    """A number the file states, as an arithmetic expression of parameters
    (``"2 ** {{hash_bits}}"``: + - * / // % ** and parentheses)."""

    value: Annotated[str, Field(min_length=1, max_length=200)] | int | float
    tolerance: float = Field(0.0, ge=0, le=1e12)


class ConceptQuestion(_Question):
    """Kind 7: a concept question: ``choices`` (one correct: answer ``choice``; several:
    answer ``choices``, partial credit) or a ``number``."""

    kind: Literal["concept"]
    choices: list[Choice] | None = Field(None, min_length=2, max_length=MAX_CHOICES)
    number: ConceptNumber | None = None

    @model_validator(mode="after")
    def _one_form(self):
        if (self.choices is None) == (self.number is None):
            raise ValueError("expected exactly one of choices, number")
        if self.choices is not None:
            if not any(choice.correct for choice in self.choices):
                raise ValueError("expected at least one choice with correct: true")
            ids = [choice.id for choice in self.choices]
            if len(set(ids)) != len(ids):
                raise ValueError("expected each choice id once")
        return self


Question = Annotated[SteeringQuestion | PortQuestion | SettingsQuestion | FragmentsQuestion
                     | TableQuestion | NumberQuestion | ConceptQuestion,
                     Field(discriminator="kind")]

#: The issue's kind number of each ``kind:``.
KIND_NUMBERS = {"steering": 1, "port": 2, "settings": 3, "fragments": 4, "table": 5,
                "number": 6, "concept": 7}
#: Kinds graded by running or asking the engine (the rest: by the file's own answer).
ENGINE_KINDS = frozenset(KIND_NUMBERS) - {"concept"}


# ---------------------------------------------------------------------------- the file

class Exercise(_Model):
    """A whole exercise file (schema version 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True,
                              json_schema_extra={"$id": "https://rsslab.example/exercise-1.json",
                                                 "title": "RSS Lab exercise"})

    schema_version: Literal[1]
    id: Name
    title: Annotated[str, Field(min_length=1, max_length=200)]
    prompt: Markdown = ""
    description: Text = ""
    scenario: dict[str, Any] | None = Field(
        None, description="the base scenario, inline (a scenario file's keys)")
    example: Name | None = Field(None, description="or a shipped example's name")
    set: dict[Annotated[str, Field(min_length=1, max_length=200)], Any] = Field(
        default_factory=dict, max_length=64,
        description="changes to the base scenario: a key path (services[0].policy) and "
                    "its value, placeholders allowed")
    parameters: dict[Name, ParameterSpec] = Field(default_factory=dict,
                                                  max_length=MAX_PARAMETERS)
    questions: list[Question] = Field(min_length=1, max_length=MAX_QUESTIONS)

    @model_validator(mode="after")
    def _one_base(self):
        if (self.scenario is None) == (self.example is None):
            raise ValueError("expected exactly one of scenario, example")
        ids = [question.id for question in self.questions]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"expected each question id once, got {', '.join(repeated)} "
                             f"again")
        return self

    @property
    def max_score(self) -> float:
        return float(sum(question.points for question in self.questions))

    def question(self, question_id: str):
        """The question called ``question_id`` (KeyError when there is none)."""
        for question in self.questions:
            if question.id == question_id:
                return question
        raise KeyError(question_id)


def without_kind_tags(errors: list[dict]) -> list[dict]:
    """Pydantic errors with the question kind it adds to a location removed
    (``questions.0.port.taken`` is ``questions[0].taken`` in the file)."""
    cleaned = []
    for error in errors:
        loc = tuple(error["loc"])
        if len(loc) > 2 and loc[0] == "questions" and loc[2] in KIND_NUMBERS:
            loc = loc[:2] + loc[3:]
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            tag = error.get("ctx", {}).get("tag")
            error = {"type": "value_error", "msg": f"expected one of "
                     f"{', '.join(KIND_NUMBERS)}, got {tag!r}" if tag else
                     f"expected a kind: {', '.join(KIND_NUMBERS)}"}
            loc = loc + ("kind",)
        cleaned.append({**error, "loc": loc})
    return cleaned


def exercise_json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of exercise files, for editors and the REST API."""
    schema = Exercise.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


#: Every model of the schema (``problems_from`` strips their names from error locations).
MODELS: tuple[type[BaseModel], ...] = (
    IntRange, PortRange, ParameterSpec, Hint, Feedback, PacketSpec, TakenPorts,
    SteeringQuestion,
    PortQuestion, SettingsQuestion, FragmentsQuestion, TableQuestion, NumberQuestion, Choice,
    ConceptNumber, ConceptQuestion, Exercise)
