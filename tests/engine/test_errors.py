"""The error tree: every engine error lives in engine/errors.py, carries a code, and no
code anywhere decides anything by reading an error's message text."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import engine.errors as errors
from engine.errors import RssLabError

REPO = Path(__file__).resolve().parents[2]


def _error_classes():
    return [value for value in vars(errors).values()
            if inspect.isclass(value) and issubclass(value, RssLabError)]


def test_every_error_class_is_exported_with_its_own_code():
    classes = _error_classes()
    assert len(classes) >= 14
    assert {cls.__name__ for cls in classes} <= set(errors.__all__)
    codes = [cls.code for cls in classes]
    assert len(set(codes)) == len(codes), codes
    assert all(code and code.islower() for code in codes)


def test_an_error_says_its_code_in_its_json_form():
    error = errors.TrafficError("flows[3]", "IPv4 flows", "::1", code="ipv6_on_batch_path")
    assert error.as_dict()["code"] == "ipv6_on_batch_path"
    assert errors.ConfigError("cores", "1 or more", 0).as_dict()["code"] == "config"


def _python_files():
    for top in ("engine", "labsite"):
        yield from (REPO / top).rglob("*.py")


def test_no_engine_error_is_defined_outside_errors_py():
    strays = []
    for path in (REPO / "engine").rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(base, ast.Name) and base.id.endswith("Error")
                    for base in node.bases):
                strays.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert strays == []


MESSAGE_PARTS = {"expected", "detail", "args", "message", "problem"}


def _reads_message(node: ast.AST, name: str) -> bool:
    """Whether ``node`` reads error ``name``'s text: ``str(name)``, ``name.expected`` …"""
    for sub in ast.walk(node):
        if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                and sub.value.id == name and sub.attr in MESSAGE_PARTS):
            return True
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name)
                and sub.func.id in ("str", "repr") and sub.args
                and isinstance(sub.args[0], ast.Name) and sub.args[0].id == name):
            return True
    return False


def test_nothing_branches_on_an_errors_message_text():
    found = []
    for path in _python_files():
        tree = ast.parse(path.read_text())
        for handler in ast.walk(tree):
            if not isinstance(handler, ast.ExceptHandler) or handler.name is None:
                continue
            for node in ast.walk(handler):
                tests = []
                if isinstance(node, ast.If | ast.IfExp | ast.While):
                    tests.append(node.test)
                elif isinstance(node, ast.Compare):
                    tests.append(node)
                for test in tests:
                    compares = [c for c in ast.walk(test) if isinstance(c, ast.Compare)]
                    if any(_reads_message(c, handler.name) for c in compares):
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert sorted(set(found)) == []


def test_the_check_catches_a_branch_on_message_text():
    source = ("try:\n    f()\nexcept ValueError as error:\n"
              "    if 'IPv4' in error.expected:\n        raise\n")
    handler = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ExceptHandler))
    compare = next(n for n in ast.walk(handler) if isinstance(n, ast.Compare))
    assert _reads_message(compare, "error")
