"""Parameters: what differs between two students' variants of one exercise.

Each parameter is drawn from the variant's seed alone, with its own generator (seeded by
the seed and the parameter's name), so adding a parameter to a file does not change the
values the others draw. The values are then substituted wherever the file writes
``{{name}}``: a value that is exactly one placeholder takes the parameter's value and
type (``cores: "{{cores}}"`` becomes ``cores: 8``), a placeholder inside text becomes
text::

    >>> from engine.exercises.schema import ParameterSpec
    >>> specs = {"cores": ParameterSpec.model_validate({"choice": [2, 4, 8]})}
    >>> values = draw_parameters(specs, seed=7)
    >>> values == draw_parameters(specs, seed=7), values["cores"] in (2, 4, 8)
    (True, True)
    >>> substitute({"cores": "{{cores}}", "note": "on {{ cores }} cores"}, {"cores": 8})
    {'cores': 8, 'note': 'on 8 cores'}
    >>> evaluate("2 ** {{bits}} // 4", {"bits": 7})
    32
"""

from __future__ import annotations

import ast
import hashlib
import ipaddress
import math
import operator
import random
import re
from collections.abc import Mapping
from typing import Any

from engine.exercises.schema import ParameterSpec

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

#: Largest exponent and magnitude an expression may reach (a file cannot ask for 9**9**9).
MAX_EXPONENT = 64
MAX_MAGNITUDE = 2 ** 128


def parameter_rng(seed: int, name: str) -> random.Random:
    """The generator parameter ``name`` draws from in variant ``seed`` (independent of
    every other parameter's)."""
    return random.Random(hashlib.sha256(f"{seed}:{name}".encode()).digest())


def _hosts(prefix: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int, int]:
    """The network and the first and last host number drawn from (network and broadcast
    addresses left out where the prefix has more than two addresses)."""
    network = ipaddress.ip_network(prefix, strict=False)
    size = network.num_addresses
    return (network, 1, size - 2) if size > 2 else (network, 0, size - 1)


def count_values(spec: ParameterSpec) -> int:
    """How many values ``spec`` can take."""
    if spec.range is not None:
        return (spec.range.high - spec.range.low) // spec.range.step + 1
    if spec.choice is not None:
        return len(spec.choice)
    if spec.port is not None:
        return spec.port.high - spec.port.low + 1
    _, first, last = _hosts(spec.address)
    return last - first + 1


def draw_value(spec: ParameterSpec, rng: random.Random) -> Any:
    """One value of ``spec``: an int, a choice's value, or an address as text."""
    if spec.range is not None:
        steps = (spec.range.high - spec.range.low) // spec.range.step
        return spec.range.low + spec.range.step * rng.randint(0, steps)
    if spec.choice is not None:
        return spec.choice[rng.randrange(len(spec.choice))]
    if spec.port is not None:
        return rng.randint(spec.port.low, spec.port.high)
    network, first, last = _hosts(spec.address)
    return str(network[rng.randint(first, last)])


def draw_parameters(specs: Mapping[str, ParameterSpec], *, seed: int) -> dict[str, Any]:
    """Every parameter's value for variant ``seed``, in file order."""
    return {name: draw_value(spec, parameter_rng(seed, name)) for name, spec in specs.items()}


def variant_count(specs: Mapping[str, ParameterSpec]) -> int:
    """How many distinct parameter sets (variants) the specs allow: the product of each
    parameter's count (1 with no parameters)."""
    return math.prod(count_values(spec) for spec in specs.values())


def placeholders_in(value: Any) -> set[str]:
    """The parameter names ``value`` (any nesting of dicts, lists and text) refers to."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(placeholders_in(v) for v in value.values()), set())
    if isinstance(value, list | tuple):
        return set().union(*(placeholders_in(v) for v in value), set())
    return set()


def substitute(value: Any, values: Mapping[str, Any]) -> Any:
    """``value`` with every placeholder replaced (see the module docstring). Unknown
    names are left as written; the loader reports them."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole is not None and whole.group(1) in values:
            return values[whole.group(1)]
        return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), value)
    if isinstance(value, Mapping):
        return {key: substitute(item, values) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [substitute(item, values) for item in value]
    return value


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv,
              ast.Mod: operator.mod, ast.Pow: operator.pow}


def evaluate(expression: str | int | float, values: Mapping[str, Any]) -> int | float:
    """The value of an arithmetic expression over numbers and placeholders (``+ - * / //
    % **``, unary minus, parentheses). ValueError names what is not allowed; exponents
    stay at most MAX_EXPONENT and results within MAX_MAGNITUDE."""
    if isinstance(expression, bool):
        raise ValueError(f"expected a number or an expression, got {expression!r}")
    if isinstance(expression, int | float):
        return expression
    text = PLACEHOLDER.sub(lambda m: f"({values[m.group(1)]})" if m.group(1) in values
                           else m.group(0), expression)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError(f"expected an arithmetic expression, got {expression!r}") from None
    return _eval(tree.body)


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not (
            isinstance(node.value, bool)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"expected an exponent of at most {MAX_EXPONENT}, got {right}")
        try:
            result = _OPERATORS[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ValueError("expected no division by zero") from None
        if isinstance(result, complex) or abs(result) > MAX_MAGNITUDE:
            raise ValueError("expected a real result of a sensible size")
        return result
    raise ValueError(f"expected numbers, parameters and + - * / // % ** only, got "
                     f"{ast.unparse(node)!r}")
