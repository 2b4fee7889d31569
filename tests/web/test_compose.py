"""docker-compose.yml is valid for Compose (checked by Debian's docker-compose v1), needs a
secret key, publishes the web service on loopback only and runs exactly one beat."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose (the validator) is not installed; .ci/run installs it")


def _compose_config(tmp_path, **env) -> subprocess.CompletedProcess:
    """``docker-compose config`` with ``env`` on top of ours minus compose's variables, and
    an empty env file (a developer's .env must not decide the outcome)."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "BIND_ADDRESS", "PORT", "WORKER_"))}
    return subprocess.run(["docker-compose", "--env-file", str(env_file), "-f", str(COMPOSE),
                           "config"], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**base, **env})


@needs_compose
def test_compose_file_validates(tmp_path):
    result = _compose_config(tmp_path, DJANGO_SECRET_KEY="a-key-for-validating-the-file")
    assert result.returncode == 0, result.stderr
    web = yaml.safe_load(result.stdout)["services"]["web"]
    # Plain HTTP on loopback by default: a TLS proxy on the host is the way in.
    assert [str(port) for port in web["ports"]] in (["127.0.0.1:8000:8000/tcp"],
                                                    ["127.0.0.1:8000:8000"])
    assert web["environment"]["DJANGO_BEHIND_TLS_PROXY"] == "1"


@needs_compose
def test_compose_refuses_to_run_without_a_secret_key(tmp_path):
    result = _compose_config(tmp_path)
    assert result.returncode != 0
    assert "set DJANGO_SECRET_KEY" in result.stderr


def test_compose_runs_the_same_stack():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) == {"web", "worker", "batch-worker", "beat", "redis", "db"}
    # A scalable worker must not pin a container name or a host port.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    assert "daphne" in " ".join(services["web"]["command"])
    assert "celery -A labsite worker" in " ".join(services["worker"]["command"])
    # One scheduler, in its own service: the reaper and the examples loader (labsite/beat.py).
    beat = " ".join(services["beat"]["command"])
    assert "celery -A labsite beat" in beat and "--schedule /app/var/" in beat
    assert "ports" not in services["beat"]


def test_no_worker_embeds_a_scheduler():
    """``worker -B`` would start one scheduler per worker (``--scale worker=4``: four)."""
    for name, service in yaml.safe_load(COMPOSE.read_text())["services"].items():
        command = service.get("command") or []
        words = " ".join(command if isinstance(command, list) else [command]).split()
        assert "-B" not in words and "--beat" not in words, name
        assert not any(word.startswith("-B") and not word.startswith("--") for word in words)


def test_compose_has_no_fallback_secret_key():
    for name in ("web", "worker", "beat"):
        key = yaml.safe_load(COMPOSE.read_text())["services"][name]["environment"][
            "DJANGO_SECRET_KEY"]
        assert key.startswith("${DJANGO_SECRET_KEY:?"), key


def test_workers_per_queue():
    """The lab's runs and grading on the default queue, large batch runs' shards on their
    own (RUN_SHARD_QUEUE), so a big API batch never starves students."""
    from django.conf import settings

    services = yaml.safe_load(COMPOSE.read_text())["services"]
    lab = " ".join(services["worker"]["command"]).split()
    batch = " ".join(services["batch-worker"]["command"]).split()
    assert lab[lab.index("--queues") + 1] == settings.CELERY_TASK_DEFAULT_QUEUE
    assert batch[batch.index("--queues") + 1] == "${RUN_SHARD_QUEUE:-batch}"
    assert settings.RUN_SHARD_QUEUE == "batch"
    for name in ("worker", "batch-worker"):
        assert "container_name" not in services[name] and "ports" not in services[name]
