"""The README's API section as written: its curl block runs against the live daphne with a
fresh token (every command must succeed), and its Python example is valid Python."""

from __future__ import annotations

import ast
import json
import re
import subprocess

import pytest
from django.contrib.auth.models import User

from labsite.api.services import token_create
from labsite.runs.models import Batch
from tests.web.conftest import REPO

pytestmark = [pytest.mark.django_db(transaction=True, reset_sequences=True),
              pytest.mark.stack]


def _api_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split("\n## API\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_curl_examples_run_as_written(daphne_url, examples):
    block = re.search(r"```sh\n(.*?)```", _api_section(), re.DOTALL).group(1)
    user = User.objects.create_user("readme")
    _, token = token_create(user=user, name="readme")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], capture_output=True,
                          text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "LAB": daphne_url, "TOKEN": token})
    assert done.returncode == 0, done.stderr + done.stdout
    answers, rest, decoder = [], done.stdout.strip(), json.JSONDecoder()
    while rest:  # one JSON document per command, without newlines between them
        answer, end = decoder.raw_decode(rest)
        answers.append(answer)
        rest = rest[end:].strip()
    assert answers[0]["results"][0] == {"hash": "0x51ccc178", "bucket": 120, "core": 0}
    assert answers[1]["valid"] is False and answers[1]["errors"]
    assert answers[2]["items_total"] == 2 and answers[3]["count"] == 1
    assert answers[4]["status"] == "ok"
    assert Batch.objects.filter(owner=user).count() == 1


def test_the_readme_python_example_is_python():
    block = re.search(r"```python\n(.*?)```", _api_section(), re.DOTALL).group(1)
    ast.parse(block)
    assert "requests" in block and "junit_url" in block
