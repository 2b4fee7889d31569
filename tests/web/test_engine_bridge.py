"""The engine bridge and the builder, on the real engine (no Django database needed)."""

from __future__ import annotations

import copy

import pytest
import yaml

from engine.errors import RssLabError, ScenarioError
from engine.examples import EXAMPLES_DIR
from engine.scenarios.scenario import load_scenario
from labsite.lab.builder import (
    DEFAULTS,
    PRESETS,
    builder_field_of,
    scenario_yaml_from_builder,
)
from labsite.lab.errors import LabInputError
from labsite.redisurls import celery_broker_url, channels_redis_url
from labsite.runs.engine_bridge import EngineJob, check_limits, compare_cells, run_job
from labsite.runs.errors import RunInputError


def _run(job: EngineJob):
    events, progress = [], []
    outcome = run_job(job, on_event=events.append, on_progress=progress.append)
    return outcome, events, progress


@pytest.mark.parametrize(("preset", "verdicts"), [
    ("nat", ["symmetric"] * 3),
    ("usip", ["symmetric"] * 3),
    ("transparent", ["handed-off"] * 3),
])
def test_each_preset_round_trips_through_yaml_and_the_engine(preset, verdicts):
    text = scenario_yaml_from_builder(PRESETS[preset])
    scenario = load_scenario(text)
    assert scenario.services[0].policy == preset
    assert scenario.system.cores == 4 and scenario.system.nic.hash_bits == 7
    assert yaml.safe_load(text)["traffic"]["flows"][0]["client"] == "66.9.149.187:2794"
    outcome, events, progress = _run(EngineJob(body=text, mode="trace", seed=1))
    report = outcome.report
    assert [row["verdict"] for row in report["rows"]] == verdicts
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert [e["verdict"] for e in events if e["kind"] == "verdict"] == verdicts
    first = next(e for e in events if e["kind"] == "hashed")
    assert (first["hash"], first["bucket"]) == (0x51CCC178, 120)  # UI.md's example
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert outcome.summary["flows"] == 3 and outcome.summary["mode"] == "trace"
    if preset == "transparent":
        assert any(e["kind"] == "forwarded" and e["via"] == "message" for e in events)
        assert report["summary"]["handed_off"] == 3 and report["summary"]["handoff_copies"] > 0
    else:
        assert report["summary"]["symmetric"] == 3 and outcome.summary["passed"]
    # The batch path agrees flow for flow.
    batch, batch_events, _ = _run(EngineJob(body=text, mode="batch", seed=1))
    assert batch_events == []
    assert [r["verdict"] for r in batch.report["rows"]] == verdicts


def test_the_same_job_gives_the_same_events():
    text = (EXAMPLES_DIR / "transparent-microsoft.yaml").read_text().replace(
        "count: 5000", "count: 50")
    _, first, _ = _run(EngineJob(body=text, mode="trace", seed=4))
    _, again, _ = _run(EngineJob(body=text, mode="trace", seed=4))
    _, other, _ = _run(EngineJob(body=text, mode="trace", seed=5))
    assert first == again and first != other


def test_rows_are_capped_and_counted(settings):
    settings.RUN_REPORT_ROWS = 10
    text = (EXAMPLES_DIR / "nat-microsoft.yaml").read_text()
    outcome, _, _ = _run(EngineJob(body=text, mode="batch"))
    assert len(outcome.report["rows"]) == 10 and outcome.report["rows_total"] == 5000
    assert outcome.report["rows_truncated"] is True
    settings.RUN_ROWS_MAX_FLOWS = 1000  # too many flows to build rows for at all
    outcome, _, _ = _run(EngineJob(body=text, mode="batch"))
    assert outcome.report["rows"] == [] and outcome.report["summary"]["flows"] == 5000


def test_example_pcap_resolves_against_the_examples_and_uploads_replace_it():
    text = (EXAMPLES_DIR / "pcap-replay.yaml").read_text()
    with pytest.raises(RssLabError):  # no base directory: the relative path is not read
        _run(EngineJob(body=text, mode="batch"))
    outcome, _, _ = _run(EngineJob(body=text, mode="batch", base_dir=EXAMPLES_DIR))
    assert outcome.report["summary"]["flows"] == 4
    uploaded = (EXAMPLES_DIR / "replay.pcap").read_bytes()
    outcome, events, _ = _run(EngineJob(body=text.replace("path: replay.pcap", "{}"),
                                        mode="trace", pcap=uploaded))
    assert outcome.report["summary"]["flows"] == 4 and events


def test_compare_job_reports_cells():
    text = (EXAMPLES_DIR / "transparent-microsoft.yaml").read_text().replace(
        "count: 5000", "count: 200")
    vary = {"key": ["microsoft", "symmetric"], "scheme": ["rss"]}
    assert compare_cells(vary) == 2
    outcome, events, progress = _run(EngineJob(body=text, mode="compare", vary=vary))
    cells = outcome.report["cells"]
    assert [c["label"] for c in cells] == ["key=microsoft", "key=symmetric"]
    assert cells[0]["handed_off"] > 0 and cells[1]["handed_off"] == 0
    assert events == [] and progress[-1] == 1.0
    assert outcome.summary == {"mode": "compare", "flows": 200, "cores": 8, "cells": 2}
    assert compare_cells({"policy": ["nat", "usip"], "key": ["microsoft", "symmetric"]}) == 8


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "trace", "flows": 5001},
     "traffic: trace mode runs at most 5,000 flows, this scenario has 5,001"),
    ({"mode": "batch", "flows": 2_000_001},
     "traffic: batch mode runs at most 2,000,000 flows, this scenario has 2,000,001"),
    ({"mode": "compare", "flows": 2_000_000, "cells": 6},
     "vary: a comparison runs at most 10,000,000 flows × cells, this one asks for "
     "2,000,000 flows × 6 cells"),
    ({"mode": "trace", "flows": 10, "delay_ms": 101}, "delay_ms: expected an integer 0–100"),
    ({"mode": "trace", "flows": 5000, "delay_ms": 100},
     "delay_ms: a slowed-down run may last at most 120 s"),
    ({"mode": "replay", "flows": 1}, "mode: expected one of trace, batch, compare"),
])
def test_limits_name_the_limit(kwargs, message):
    with pytest.raises(RunInputError) as error:
        check_limits(**kwargs)
    assert str(error.value).startswith(message)


def test_trace_event_limit_stops_a_run(settings):
    settings.RUN_TRACE_MAX_EVENTS = 20
    with pytest.raises(RunInputError, match="at most 20 events"):
        _run(EngineJob(body=scenario_yaml_from_builder(PRESETS["nat"]), mode="trace"))


def test_bad_scenarios_raise_the_engines_error_with_problems():
    with pytest.raises(ScenarioError) as error:
        _run(EngineJob(body="schema_version: 1\nname: x\nsystem: {cores: 0}\nservices: []",
                       mode="trace"))
    assert [(p.path, p.line) for p in error.value.problems] == [("system.cores", 3)]


def test_builder_defaults_fill_missing_fields_and_flows_drop_blanks():
    text = scenario_yaml_from_builder({"policy": "usip", "traffic": {
        "kind": "flows", "flows": [{"client": "1.2.3.4:5", "service": "web",
                                    "proto": "", "response_bytes": None}]}})
    data = yaml.safe_load(text)
    assert data["services"][0]["policy"] == "usip"
    assert data["system"]["cores"] == DEFAULTS["cores"]
    assert data["traffic"] == {"flows": [{"client": "1.2.3.4:5", "service": "web"}]}
    generated = yaml.safe_load(scenario_yaml_from_builder(
        {"traffic": {"kind": "generated", "count": 50, "zipf": 1.2, "seed": ""}}))
    assert generated["traffic"] == {"generated": {"count": 50, "zipf": 1.2}}
    assert yaml.safe_load(scenario_yaml_from_builder({"traffic": {"kind": "pcap"}}))[
        "traffic"] == {"pcap": {}}
    load_scenario(text)


@pytest.mark.parametrize(("fields", "field"), [
    ("nope", "builder"),
    ({"traffic": {"kind": "flows", "flows": []}}, "traffic.flows"),
    ({"traffic": {"kind": "flows", "flows": [{"client": "1.2.3.4:5", "port": 1}]}},
     "traffic.flows[0].port"),
    ({"service": {"vipp": "1.2.3.4"}}, "service.vipp"),
    ({"traffic": {"kind": "generated", "count": 5, "bogus": 1}}, "traffic.bogus"),
])
def test_builder_shape_errors_name_the_field(fields, field):
    with pytest.raises(LabInputError) as error:
        scenario_yaml_from_builder(fields)
    assert error.value.errors[0]["field"] == field


@pytest.mark.parametrize(("path", "field"), [
    ("system.cores", "cores"), ("system.nic.key", "key"), ("system.nic.table[3]", "table"),
    ("ports.tables_per_ip", "tables_per_ip"), ("services[0].policy", "policy"),
    ("services[0].servers[1]", "service.servers"), ("handoff", "handoff"),
    ("traffic.flows[2].client", "traffic.flows[2].client"),
    ("traffic.generated.count", "traffic.count"), ("", "builder"), ("checks", "checks"),
])
def test_scenario_paths_map_back_to_builder_fields(path, field):
    assert builder_field_of(path) == field


def test_presets_are_independent_copies():
    nat = copy.deepcopy(PRESETS["nat"])
    nat["service"]["vip"] = "1.1.1.1"
    assert PRESETS["nat"]["service"]["vip"] == "161.142.100.80"
    assert PRESETS["usip"]["tables_per_ip"] == 4


@pytest.mark.parametrize(("url", "celery", "channels"), [
    ("unix:///tmp/r.sock", "redis+socket:///tmp/r.sock", "unix:///tmp/r.sock"),
    ("redis+socket:///tmp/r.sock", "redis+socket:///tmp/r.sock", "unix:///tmp/r.sock"),
    ("redis://127.0.0.1:6379/14", "redis://127.0.0.1:6379/14", "redis://127.0.0.1:6379/14"),
])
def test_one_redis_url_spelled_for_each_client(url, celery, channels):
    assert celery_broker_url(url) == celery and channels_redis_url(url) == channels
