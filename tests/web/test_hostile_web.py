"""Hostile input where it enters the web: the lab's JSON API on a real daphne, the admin.

A document nested 100,000 deep once killed daphne with SIGSEGV (libyaml composes
recursively in C). These tests post it to a daphne subprocess, so a regression fails the
test, and then check that daphne still answers.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile

from engine.examples import EXAMPLES_DIR
from labsite.lab.builder import PRESETS
from labsite.runs.models import Run
from tests.conftest import DATA

DEPTH = 100_000  # within the lab's 256 KiB for typed scenarios (flow mappings: half)
DEEP_YAML = {
    "flow sequences": "a: " + "[" * DEPTH + "]" * DEPTH + "\n",
    "flow mappings": "a: " + "{b: " * (DEPTH // 2) + "1" + "}" * (DEPTH // 2) + "\n",
    "block sequences": "- " * DEPTH + "x\n",
}


def _post(base_url: str, path: str, body: dict, cookie: str) -> tuple[int, dict]:
    """POST JSON as the page does: session cookie, CSRF cookie and header, same origin."""
    token = secrets.token_hex(16)  # 32 characters: a CSRF secret Django accepts as is
    request = urllib.request.Request(
        base_url + path, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Origin": base_url,
                 "Referer": base_url + "/lab/", "X-CSRFToken": token,
                 "Cookie": f"{cookie}; csrftoken={token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _answers(base_url: str) -> int:
    with urllib.request.urlopen(base_url + "/accounts/login/", timeout=10) as response:
        return response.status


@pytest.mark.stack
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", DEEP_YAML)
@pytest.mark.parametrize(("path", "extra"), [
    ("/lab/api/runs/", {"mode": "batch"}),
    ("/lab/api/compare/", {"vary": {"key": ["microsoft"]}})])
def test_deep_yaml_is_a_400_and_daphne_lives_on(daphne_url, login_cookie, kind, path, extra):
    user = User.objects.create_user(f"deep-{secrets.token_hex(4)}", password="pw-for-tests-1")
    status, body = _post(daphne_url, path, {"source": "yaml", "scenario": DEEP_YAML[kind],
                                            **extra}, login_cookie(user))
    assert status == 400, body
    assert body["errors"] == [{"code": "scenario", "field": "scenario", "line": 1,
                               "message": "expected nesting at most 32 deep"}]
    assert _answers(daphne_url) == 200
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_an_ipv6_capture_under_nat_is_queued_not_refused(client, student):
    # A capture with IPv6 flows runs on both paths (issue 12, gap 8): nat counts those
    # flows as not served, with the reason, instead of the page refusing the upload.
    capture = (DATA / "pcaps" / "sv__defrag__bug-6887-defrag-ipv6-tcp__frag-ip-tcp.pcap")
    scenario = (EXAMPLES_DIR / "pcap-replay.yaml").read_text().replace(
        "  pcap:\n    path: replay.pcap\n", "  pcap: {}\n")
    for mode in ("trace", "batch"):
        response = client.post("/lab/api/runs/", {
            "source": "yaml", "scenario": scenario, "mode": mode,
            "pcap": SimpleUploadedFile("v6.pcap", capture.read_bytes())})
        assert response.status_code == 201, response.content
        assert response.json()["mode"] == mode
    assert Run.objects.count() == 2


@pytest.mark.django_db
def test_the_admin_refuses_a_deep_scenario_with_a_form_error(admin_client):
    deep = "a: " + "[" * 3000 + "]" * 3000
    response = admin_client.post("/admin/lab/scenario/add/", {
        "name": "deep", "slug": "deep", "description": "", "body": deep, "example": ""})
    assert response.status_code == 200
    assert "expected nesting at most 64 deep (got deeper on line 1)" in response.content.decode()


@pytest.mark.django_db
def test_builder_json_still_nests_as_deep_as_a_form_needs(client, student):
    fields = json.loads(json.dumps(PRESETS["nat"]))
    response = client.post("/lab/api/builder-yaml/", json.dumps({"builder": fields}),
                           content_type="application/json")
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_a_csrf_refusal_on_the_json_api_is_json_and_a_page_keeps_html(student):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(student)
    response = client.post("/lab/api/runs/", json.dumps({"source": "builder"}),
                           content_type="application/json")
    assert response.status_code == 403
    [error] = response.json()["errors"]
    assert error["field"] == "csrf" and error["message"].startswith("expected the CSRF token")
    page = client.post("/accounts/logout/")
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")
