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
