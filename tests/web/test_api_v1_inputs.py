"""Hostile and wrong input where it enters the API (never a 500, always the field named),
the token page and ``manage.py api_token``, hashing against the engine, validation."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from labsite.api.models import ApiToken
from labsite.api.services import token_create
from labsite.lab.builder import PRESETS, scenario_yaml_from_builder

pytestmark = pytest.mark.django_db
NAT = scenario_yaml_from_builder(PRESETS["nat"])


@pytest.fixture
def auth():
    user = User.objects.create_user("eng")
    return {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=user, name='t')[1]}"}


def _post(client, url, body, auth, **extra):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(url, data, content_type="application/json", **auth, **extra)


def _error(response, status):
    assert response.status_code == status, response.content[:300]
    return response.json()["errors"]


@pytest.mark.parametrize(("url", "body", "field", "code"), [
    ("/api/v1/hash", "[" * 200_000, "body", "document"),
    ("/api/v1/hash", '{"a":' * 100 + "1" + "}" * 100, "body", "document"),
    ("/api/v1/hash", "{not json", "body", "document"),
    ("/api/v1/hash", '{"src": "1.2.3.4", "dst": ' + "9" * 5000 + "}", "body", "document"),
    ("/api/v1/hash", {"src": "1.2.3.4"}, "dst", "required"),
    ("/api/v1/hash", {"src": "1.2.3.4", "dst": "5.6.7.8", "cores": "many"}, "cores",
     "invalid"),
    ("/api/v1/hash", {"tuples": [{"src": "1.2.3.4", "dst": "::1"}]}, "tuples[0].dst", "tuple"),
    ("/api/v1/hash", {"tuples": [{"src": "1.2.3.4", "dst": "5.6.7.8", "sport": 70000,
                                  "dport": 1}]}, "tuples[0].sport", "tuple"),
    ("/api/v1/hash", {"tuples": [7]}, "tuples[0]", "invalid"),
    ("/api/v1/hash", {"tuples": "x"}, "tuples", "not_a_list"),
    ("/api/v1/scenarios", {"name": "x"}, "body", "required"),
    ("/api/v1/scenarios", {"body": "schema_version: 1\nname: x\n"}, "services", "scenario"),
    ("/api/v1/runs", {"mode": "batch"}, "scenario", "required"),
    ("/api/v1/runs", {"scenario": NAT, "mode": "warp"}, "mode", "invalid_choice"),
    ("/api/v1/runs", {"scenario": NAT, "seed": -1}, "seed", "min_value"),
    ("/api/v1/batches", {"items": []}, "items", "invalid"),
    ("/api/v1/batches", {"items": [{"scenario": NAT}] * 257}, "items", "too_many"),
    ("/api/v1/batches", {"items": [{"scenario": 5}]}, "items[0].scenario", "scenario"),
    ("/api/v1/batches", {"scenario": NAT, "variations": [{"colour": "red"}]},
     "variations[0]", "invalid"),
])
def test_bad_input_is_a_400_naming_the_field(client, auth, url, body, field, code):
    errors = _error(_post(client, url, body, auth), 400)
    assert (errors[0]["field"], errors[0]["code"]) == (field, code), errors


def test_a_body_over_the_limit_is_a_413(client, auth, settings):
    settings.API_BODY_MAX_BYTES = 1000
    errors = _error(_post(client, "/api/v1/hash", {"src": "1.2.3.4", "dst": "5.6.7.8",
                                                   "pad": "x" * 2000}, auth), 413)
    assert errors[0]["code"] == "too_large"
    assert _error(client.post("/api/v1/hash", "<x/>", content_type="application/xml",
                              **auth), 415)[0]["field"] == "Content-Type"


def test_hashing_many_tuples_agrees_with_the_engine_one_by_one(client, auth):
    from engine.commands.hash import hash_one

    tuples = [{"src": f"10.0.{i % 200}.{i % 250}", "dst": "192.0.2.1", "sport": 1024 + i,
               "dport": 80} for i in range(2000)]
    tuples += [{"src": "2001:db8::1", "dst": "2001:db8::2", "sport": 1, "dport": 2},
               {"src": "10.1.1.1", "dst": "10.2.2.2"}]
    response = _post(client, "/api/v1/hash", {"tuples": tuples, "cores": 6, "hash_bits": 5},
                     auth)
    assert response.status_code == 200
    got = response.json()["results"]
    for item, result in zip(tuples, got, strict=True):
        want = hash_one(src=item["src"], dst=item["dst"], sport=item.get("sport"),
                        dport=item.get("dport"), cores="6", hash_bits="5")
        assert result == {k: want[k] for k in ("hash", "bucket", "core")}


def test_validate_lists_every_problem_and_stores_nothing(client, auth):
    from labsite.lab.models import Scenario

    before = Scenario.objects.count()
    bad = NAT.replace("policy: nat", "policy: natt").replace("cores: 4", "cores: 0")
    answer = _post(client, "/api/v1/scenarios/validate", {"body": bad}, auth).json()
    assert answer["valid"] is False and len(answer["errors"]) >= 1
    assert all(e["line"] and e["field"] for e in answer["errors"])
    good = _post(client, "/api/v1/scenarios/validate", {"body": NAT}, auth).json()
    assert good["valid"] is True and good["flows"] > 0
    upload = StringIO(NAT)
    upload.name = "nat.yaml"
    stored = client.post("/api/v1/scenarios", {"file": upload, "name": "up"}, **auth)
    assert stored.status_code == 201 and stored.json()["body"] == NAT
    assert Scenario.objects.count() == before + 1


def test_the_token_page_shows_a_secret_once_and_revokes(client):
    user = User.objects.create_user("web", password="pw-for-tests-123")
    client.force_login(user)
    made = client.post("/api/tokens/", {"name": "laptop", "expires": "30"})
    secret = made.context["secret"]
    assert secret.startswith("rsl_") and secret.encode() in made.content
    assert made["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=user)
    assert token.prefix == secret[:12] and secret not in token.digest
    assert secret.encode() not in client.get("/api/tokens/").content
    client.post(f"/api/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.state == "revoked"
    client.logout()
    assert client.get("/api/v1/runs", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401


def test_manage_py_api_token(client):
    User.objects.create_user("cli")
    out, err = StringIO(), StringIO()
    call_command("api_token", "create", "cli", "--name", "ci", "--days", "3", "--read-only",
                 stdout=out, stderr=err)
    secret = out.getvalue().strip()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    assert client.get("/api/v1/runs", **headers).status_code == 200
    assert _post(client, "/api/v1/runs", {"scenario": NAT}, headers).status_code == 403
    listing = StringIO()
    call_command("api_token", "list", "cli", stdout=listing)
    assert "read-only\tactive" in listing.getvalue()
    call_command("api_token", "revoke", secret[:12], stdout=StringIO())
    assert client.get("/api/v1/runs", **headers).status_code == 401
    with pytest.raises(CommandError):
        call_command("api_token", "create", "nobody")
