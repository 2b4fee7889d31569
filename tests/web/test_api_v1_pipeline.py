"""The REST API as a CI pipeline uses it, over HTTP on a real daphne with a real Celery
worker and Redis: a token, a batch of 20 scenarios (ten must fail their checks), polling
until every item ended, each verdict as the engine gives it, and the JUnit XML parsed."""

from __future__ import annotations

import json
import time
from xml.etree import ElementTree

import pytest
from django.contrib.auth.models import User

from labsite.api.services import token_create
from labsite.lab.models import Scenario
from tests.web.helpers import api_request

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


def _expected_passed(body: str, *, base_dir=None) -> bool:
    """What the engine itself says of ``body`` on the batch path."""
    from engine.runs.run import verify_scenario
    from engine.scenarios.scenario import load_scenario

    return verify_scenario(load_scenario(body, base_dir=base_dir), mode="batch").passed


def _tightened(body: str) -> str:
    """``body`` with a check no run can pass (no flows at all), as JSON."""
    from engine.scenarios.scenario.document import parse_document

    data, _ = parse_document(body, "scenario", [])
    data.setdefault("checks", {})["flows"] = "== 0"
    return json.dumps(data)


PIPELINE_EXAMPLES = (
    "adversarial-flood", "fragmented-udp", "fragmented-udp-ms-2tuple", "heavy-hitters",
    "nat-microsoft", "pcap-replay", "singular-key-usip", "transparent-microsoft",
    "transparent-symmetric", "usip-microsoft")


def test_a_ci_pipeline_runs_a_batch_of_twenty_and_reads_junit(daphne_url, worker, examples):
    from engine.examples import EXAMPLES_DIR

    user = User.objects.create_user("ci-bot")
    _token, secret = token_create(user=user, name="ci")
    # ten of the shipped examples (a fixed list: new examples must not change the batch)
    stored = list(Scenario.objects.filter(example__in=PIPELINE_EXAMPLES).order_by("example"))
    assert len(stored) == 10
    items = [{"scenario_id": s.pk, "title": s.example} for s in stored]
    expected = [_expected_passed(s.body, base_dir=EXAMPLES_DIR) for s in stored]
    tightened = [s for s in stored if s.example != "pcap-replay"]  # reads its own capture
    tightened.append(next(s for s in stored if s.example == "nat-microsoft"))
    items += [{"scenario": _tightened(s.body), "title": f"{s.example}-tight", "seed": 7}
              for s in tightened]
    expected += [False] * len(tightened)
    assert len(items) == 20 and expected.count(False) >= 10

    request = {"title": "nightly", "items": items}
    key = {"Idempotency-Key": "nightly-42"}
    status, batch, headers = api_request(daphne_url, "POST", "/api/v1/batches", token=secret,
                                         data=request, headers=key)
    assert status == 202, batch
    location = headers["Location"]
    assert location == f"{daphne_url}/api/v1/batches/{batch['id']}"
    assert batch["items_total"] == 20 and batch["result"] is None
    # A CI job that retries its POST gets the same batch, not a second one.
    again, replay, replay_headers = api_request(daphne_url, "POST", "/api/v1/batches",
                                                token=secret, data=request, headers=key)
    assert (again, replay["id"], replay_headers["Idempotent-Replayed"]) == (202, batch["id"],
                                                                           "true")
    other, refused, _ = api_request(daphne_url, "POST", "/api/v1/batches", token=secret,
                                    data={**request, "title": "else"}, headers=key)
    assert other == 422 and refused["errors"][0]["code"] == "idempotency_key_reused"

    path = location.removeprefix(daphne_url)
    deadline = time.monotonic() + 150
    while True:
        status, batch, _ = api_request(daphne_url, "GET", path, token=secret)
        assert status == 200, batch
        if batch["status"] == "finished":
            break
        assert time.monotonic() < deadline, f"batch not done: {batch['items_finished']}/20"
        time.sleep(0.5)
    assert [item["status"] for item in batch["items"]] == ["succeeded"] * 20, batch["items"]
    assert [item["passed"] for item in batch["items"]] == expected
    assert [item["title"] for item in batch["items"]] == [i["title"] for i in items]
    result = batch["result"]
    assert result["passed"] is False
    assert (result["items_passed"], result["items_failed"], result["items_in_error"]) == (
        expected.count(True), expected.count(False), 0)
    assert set(result["flows"]) == {"symmetric", "handed-off", "refused", "asymmetric"}
    one = batch["items"][0]
    status, run, _ = api_request(daphne_url, "GET", f"/api/v1/runs/{one['run_id']}",
                                 token=secret)
    assert status == 200 and run["batch_id"] == batch["id"] and run["schema_version"] == 1
    assert run["verdict"]["passed"] is expected[0] and run["checks"]

    for junit_path in (f"{path}?format=junit", f"{path}/junit"):
        status, xml, headers = api_request(daphne_url, "GET", junit_path, token=secret)
        assert status == 200 and headers["Content-Type"].startswith("application/xml")
        suite = ElementTree.fromstring(xml).find("testsuite")
        cases = suite.findall("testcase")
        failing_items = {case.get("classname") for case in cases
                         if case.find("failure") is not None}
        assert len(failing_items) == expected.count(False)
        assert int(suite.get("failures")) >= expected.count(False)
        assert int(suite.get("tests")) == len(cases) and suite.get("errors") == "0"
        assert all(".item" in case.get("classname") for case in cases)
