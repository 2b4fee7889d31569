"""The server side of issue 15, without a browser: port figures of the fitting ports, the
traffic a transparent comparison cell needs, the stored report as the CLI's HTML, run
titles that say what differs, a scenario file as form fields, the runs list's filters."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from labsite.lab.builder import PRESETS, builder_fields_from_scenario, scenario_yaml_from_builder
from labsite.runs import engine_bridge
from labsite.runs.models import Run
from labsite.runs.selectors import RunFilters, run_list

RUN_OUT = """\
schema_version: 1
name: ports-run-out
seed: 1
system: {cores: 4, nic: {key: microsoft, hash_bits: 7}}
ports: {range: {low: 1024, high: 1063}}
services:
  - {name: web, vip: 192.0.2.10, vport: 80, policy: nat, servers: ["10.0.0.1:8080"]}
traffic:
  generated: {count: 60, services: [web], client_prefixes: [198.51.100.0/24]}
"""


def _run(body, mode, **job):
    return engine_bridge.run_job(engine_bridge.EngineJob(body=body, mode=mode, **job),
                                 on_event=lambda e: None, on_progress=lambda f: None)


def test_ports_are_counted_of_the_fitting_ones_and_a_core_that_ran_out_is_named():
    ports = _run(RUN_OUT, "batch").report["ports"]
    # 40 ports, 10 fitting each core: "of all" reads 20-30 %, "of fitting" 80-100 %.
    assert ports["of_all"] == [0.2, 0.2, 0.3, 0.2]
    assert ports["of_fitting"] == [0.8, 0.8, 1.0, 0.8]
    assert ports["refused"] == [5, 7, 6, 6] and all(ports["ran_out"])
    clean = _run(scenario_yaml_from_builder(PRESETS["nat"]), "batch").report["ports"]
    assert clean["refused"] == [0, 0, 0, 0] and not any(clean["ran_out"])


def test_a_transparent_cell_gets_its_servers_at_the_vip_in_cross_product_order():
    report = _run(scenario_yaml_from_builder(PRESETS["nat"]), "compare",
                  vary={"key": ["microsoft", "symmetric"],
                        "policy": ["nat", "transparent"]}).report
    rss = [c for c in report["cells"] if c["scheme"] == "rss"]
    assert [c["label"] for c in rss] == [
        "key=microsoft policy=nat", "key=microsoft policy=transparent",
        "key=symmetric policy=nat", "key=symmetric policy=transparent"]
    assert rss[3]["symmetric_rate"] == 1.0 and rss[3]["note"] == "servers at the VIP"
    assert "note" not in rss[0] and report["notes"]
    assert len(report["cells"]) == 8                     # and the other schemes, once each


def test_the_stored_report_renders_as_the_clis_html():
    page = engine_bridge.report_html(_run(RUN_OUT, "trace").report)
    assert page.startswith("<!DOCTYPE html>") and "RSS Lab report: ports-run-out" in page
    assert "⊘ 24 refused" in page and "Per-flow verdicts" in page


def test_a_run_title_says_what_differs():
    from engine.scenarios.scenario import load_scenario
    from labsite.runs.submit import run_title

    scenario = load_scenario(scenario_yaml_from_builder({**PRESETS["usip"], "key": "symmetric"}))
    assert run_title(scenario, flows=3) == "usip-microsoft-4-cores · usip · key symmetric · 3 flows"
    assert run_title(scenario, flows=1, vary={"policy": ("nat", "usip")}) == (
        "usip-microsoft-4-cores · compare policy nat,usip · 1 flow")


def test_a_scenario_file_comes_back_as_form_fields_with_what_the_form_cannot_show():
    loaded = builder_fields_from_scenario(scenario_yaml_from_builder(PRESETS["transparent"]))
    assert loaded["unshown"] == []
    assert loaded["fields"]["policy"] == "transparent"
    assert loaded["fields"]["service"]["servers"] == ["161.142.100.80:1766"]
    assert scenario_yaml_from_builder(loaded["fields"]) == scenario_yaml_from_builder(
        PRESETS["transparent"])
    assert builder_fields_from_scenario(RUN_OUT)["unshown"] == ["seed", "ports.range"]
    assert builder_fields_from_scenario("- a list") is None


@pytest.mark.django_db
def test_the_report_download_reads_only_and_the_list_filters(client):
    student = User.objects.create_user("stu", password="pw-for-tests-123")
    client.force_login(student)
    run = Run.objects.create(scenario_body=RUN_OUT, ran_by=student, mode="batch",
                             status="succeeded", title="ports-run-out · nat",
                             report=_run(RUN_OUT, "batch").report,
                             summary={"passed": False, "symmetric": 0})
    queued = Run.objects.create(scenario_body=RUN_OUT, ran_by=student, title="q")
    response = client.get(f"/lab/api/runs/{run.pk}/report.html")
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        f'attachment; filename="rsslab-run-{run.pk}-ports-run-out-nat.html"')
    assert b"RSS Lab report: ports-run-out" in response.content
    assert client.post(f"/lab/api/runs/{run.pk}/report.html").status_code == 405
    missing = client.get(f"/lab/api/runs/{queued.pk}/report.html")
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "run"
    filters = RunFilters.from_query({"verdict": "failed", "mode": "batch", "who": "all"},
                                    instructor=False)
    assert filters.who == "mine" and list(run_list(user=student, filters=filters)) == [run]
    none = RunFilters.from_query({"verdict": "none", "date": "not a date"}, instructor=False)
    assert none.date is None and list(run_list(user=student, filters=none)) == [queued]
