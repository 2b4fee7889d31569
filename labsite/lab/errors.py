"""The lab API's one error type and its JSON shape.

Every refusal of the lab's JSON endpoints is a 400 with::

    {"errors": [{"field": "service.vip", "line": null, "message": "expected ..."}, ...]}

``field`` names the input (a builder field, ``scenario``, ``pcap``, ``mode`` …), ``line``
is the scenario text's line (1-based) when the problem is in typed YAML, else null.
"""

from __future__ import annotations


class LabInputError(ValueError):
    """Input the lab refuses; ``errors`` is the list the JSON response carries."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))

    @classmethod
    def one(cls, field: str, message: str, line: int | None = None) -> LabInputError:
        return cls([{"field": field, "line": line, "message": message}])

    @classmethod
    def from_engine(cls, error, field: str | None = None) -> LabInputError:
        """An engine ``RssLabError`` as the error of ``field`` (default: the engine's own
        field). The message drops the field's name when it is the one shown, so a form
        never reads ``pcap: pcap: expected …``."""
        field = field or error.field
        same = lab_field(error.field) == lab_field(field)
        return cls.one(field, error.problem if same else str(error))


def lab_field(field: str) -> str:
    """A field as the lab spells it: the CLI's ``--vary key`` is the form's ``vary.key``."""
    return field.removeprefix("--").replace(" ", ".")
