"""Loading the web's URL configuration does not load the engine's execution paths or
NumPy: the engine is imported lazily, where a request needs it. Checked in a fresh
interpreter, since this pytest process has imported both long ago."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")
import django
django.setup()
import labsite.urls  # noqa: F401
print(json.dumps(sorted(m for m in sys.modules if m == "numpy" or m.startswith("engine"))))
"""


def test_the_url_configuration_loads_neither_numpy_nor_the_batch_path():
    env = {**os.environ, "DJANGO_SECRET_KEY": "k" * 50, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "numpy" not in loaded
    assert not [m for m in loaded if m.startswith(("engine.paths", "engine.runs"))], loaded


def test_importing_engine_errors_loads_nothing_else():
    probe = ("import json, sys; import engine.errors; print(json.dumps(sorted(m for m in "
             "sys.modules if m.startswith(('engine', 'numpy', 'pydantic', 'yaml')))))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert json.loads(result.stdout) == ["engine", "engine.errors"]
