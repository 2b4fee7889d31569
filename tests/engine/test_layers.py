"""The import contracts (pyproject.toml, ``[tool.importlinter]``) hold on the tree, and
they catch a forbidden import: a copy of the tree with one injected must fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_tree(target: Path) -> Path:
    for name in ("engine", "labsite"):
        shutil.copytree(REPO / name, target / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", target / "pyproject.toml")
    return target


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("engine/packet/model.py", "from engine.runs import run as _up  # noqa", "layers"),
    ("engine/appliance/rules.py", "import django as _web  # noqa", "pure Python"),
])
def test_an_injected_forbidden_import_breaks_a_contract(tmp_path, module, line, contract):
    tree = _copy_tree(tmp_path)
    assert _lint(tree).returncode == 0, "the copied tree should pass as it is"
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}\n")
    result = _lint(tree)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert len(broken) == 1 and contract in broken[0], result.stdout[-2000:]
