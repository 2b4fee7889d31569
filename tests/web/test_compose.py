"""docker-compose.yml is valid for Compose (checked by Debian's docker-compose v1)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose (the validator) is not installed; .ci/run installs it")
def test_compose_file_validates():
    result = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_compose_runs_the_same_stack():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) == {"web", "worker", "redis", "db"}
    # A scalable worker must not pin a container name or a host port.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    assert "daphne" in " ".join(services["web"]["command"])
    assert "celery -A labsite worker" in " ".join(services["worker"]["command"])
