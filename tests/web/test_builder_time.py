"""The lab form's time controls for generated traffic (issue 12): "Start times" (none, spread
over N µs, a rate of R per second), "Session end" (fin, rst, none) and "Hold (µs)". Builder
fields -> scenario YAML -> the engine and back into the same fields; only what differs from
the engine's defaults is written; each problem the engine finds lands on its input; and a
form with start times runs on both paths (Run ▶ = trace, Verify = batch) with one verdict."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ScenarioError
from engine.scenarios.scenario import load_scenario
from engine.scenarios.scenario.limits import MAX_RATE_PER_S, MAX_TIME_US
from labsite.lab.builder import (
    PRESETS,
    builder_field_of,
    builder_fields_from_scenario,
    scenario_yaml_from_builder,
)
from labsite.lab.errors import LabInputError
from labsite.runs.engine_bridge import EngineJob, run_job


def _generated(policy: str = "nat", **time) -> dict:
    """A preset with generated traffic as the page sends it (blank inputs as null)."""
    fields = copy.deepcopy(PRESETS[policy])
    fields["traffic"] = {"kind": "generated", "count": 200,
                         "client_prefixes": ["198.51.100.0/24"], "zipf": None, "seed": 3,
                         "start": None, "close": "fin", "hold_us": None, **time}
    return fields


def _written(fields) -> dict:
    return yaml.safe_load(scenario_yaml_from_builder(fields))["traffic"]["generated"]


def test_the_time_controls_reach_the_engine_and_come_back_into_the_form():
    fields = _generated(start={"rate_per_s": 20_000}, close="rst", hold_us=500)
    text = scenario_yaml_from_builder(fields)
    assert _written(fields) == {"count": 200, "client_prefixes": ["198.51.100.0/24"],
                                "seed": 3, "start": {"rate_per_s": 20_000}, "close": "rst",
                                "hold_us": 500}
    source = load_scenario(text).sources[0].generated
    assert (source.start.rate_per_s, source.start.spread_us) == (20_000, None)
    assert (source.close, source.hold_us) == ("rst", 500)

    loaded = builder_fields_from_scenario(text)
    assert loaded["unshown"] == []
    assert {k: loaded["fields"]["traffic"][k] for k in ("start", "close", "hold_us")} == {
        "start": {"rate_per_s": 20_000}, "close": "rst", "hold_us": 500}
    assert scenario_yaml_from_builder(loaded["fields"]) == text


def test_the_defaults_write_nothing_so_generated_traffic_reads_as_before():
    assert _written(_generated()) == {"count": 200, "client_prefixes": ["198.51.100.0/24"],
                                      "seed": 3}
    # blank inputs are the defaults too; and a file spelling the defaults out loads into
    # the form with them, which then leaves them out again
    assert _written(_generated(start=None, close="fin", hold_us="")) == _written(_generated())
    text = scenario_yaml_from_builder(_generated()).replace(
        "    seed: 3\n", "    seed: 3\n    close: fin\n    hold_us: null\n    start: null\n")
    load_scenario(text)
    fields = builder_fields_from_scenario(text)
    assert fields["unshown"] == []
    assert _written(fields["fields"]) == _written(_generated())


def test_an_unknown_start_kind_in_a_file_is_left_to_the_yaml_tab():
    text = scenario_yaml_from_builder(_generated(start={"spread_us": 10})).replace(
        "start: {spread_us: 10}", "start: {spread_us: 10, jitter_us: 3}")
    assert builder_fields_from_scenario(text)["unshown"] == [
        "traffic.generated.start.jitter_us"]


def _problems(fields) -> dict[str, str]:
    with pytest.raises(ScenarioError) as error:
        load_scenario(scenario_yaml_from_builder(fields))
    return {builder_field_of(p.path): p.message for p in error.value.problems}


@pytest.mark.parametrize(("time", "field", "message"), [
    ({"start": {"rate_per_s": 0}}, "traffic.start.rate_per_s", ">= 1"),
    ({"start": {"rate_per_s": MAX_RATE_PER_S + 1}}, "traffic.start.rate_per_s", "<="),
    ({"start": {"spread_us": 0}}, "traffic.start.spread_us", ">= 1"),
    ({"start": {"spread_us": MAX_TIME_US + 1}}, "traffic.start.spread_us", "<="),
    ({"start": {"spread_us": 5, "rate_per_s": 7}}, "traffic.start", "exactly one"),
    ({"close": "shut"}, "traffic.close", "fin, rst, none"),
    ({"hold_us": -1}, "traffic.hold_us", ">= 0"),
    ({"hold_us": MAX_TIME_US + 1}, "traffic.hold_us", "<="),
])
def test_the_engines_problems_land_on_the_time_inputs(time, field, message):
    found = _problems(_generated(**time))
    assert set(found) == {field}
    assert message in found[field]


@pytest.mark.parametrize(("path", "field"), [
    ("traffic.generated.start.rate_per_s", "traffic.start.rate_per_s"),
    ("traffic.generated.start.spread_us", "traffic.start.spread_us"),
    ("traffic.generated.start", "traffic.start"),
    ("traffic.generated.close", "traffic.close"),
    ("traffic.generated.hold_us", "traffic.hold_us"),
    ("traffic.generated.count", "traffic.count"),
])
def test_time_problem_paths_map_to_their_controls(path, field):
    assert builder_field_of(path) == field


@pytest.mark.parametrize(("time", "field"), [
    ({"start": {"rate_per_s": None}}, "traffic.start.rate_per_s"),   # chosen, left blank
    ({"start": {"spread_us": ""}}, "traffic.start.spread_us"),
    ({"start": {"rate_per_s": "fast"}}, "traffic.start.rate_per_s"),
    ({"start": {"rate_per_s": 1.5}}, "traffic.start.rate_per_s"),
    ({"start": {"every_us": 5}}, "traffic.start.every_us"),
    ({"start": 5}, "traffic.start"),
    ({"close": 1}, "traffic.close"),
    ({"hold_us": "long"}, "traffic.hold_us"),
])
def test_form_values_of_the_wrong_shape_name_their_time_input(time, field):
    with pytest.raises(LabInputError) as error:
        scenario_yaml_from_builder(_generated(**time))
    assert error.value.errors[0]["field"] == field


_start = st.one_of(st.none(),
                   st.builds(lambda n: {"spread_us": n}, st.integers(1, MAX_TIME_US)),
                   st.builds(lambda r: {"rate_per_s": r}, st.integers(1, MAX_RATE_PER_S)))


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(start=_start, close=st.sampled_from(["fin", "rst", "none"]),
       hold=st.one_of(st.none(), st.integers(0, MAX_TIME_US)), count=st.integers(1, 5000))
def test_the_time_controls_round_trip_through_the_yaml_exactly(start, close, hold, count):
    fields = _generated(start=start, close=close, hold_us=hold, count=count)
    if start and "rate_per_s" in start and (count - 1) * 1_000_000 // start["rate_per_s"] \
            > MAX_TIME_US:
        return                           # the engine refuses a last start past the limit
    text = scenario_yaml_from_builder(fields)
    source = load_scenario(text).sources[0].generated    # the engine takes what was written
    assert (source.close, source.hold_us) == (close, hold)
    assert (source.start.model_dump(exclude_none=True) if source.start else None) == start
    back = builder_fields_from_scenario(text)
    assert back["unshown"] == []
    traffic = back["fields"]["traffic"]
    assert traffic.get("start") == start
    assert traffic.get("close", "fin") == close
    assert traffic.get("hold_us") == hold
    assert scenario_yaml_from_builder(back["fields"]) == text


def _run(text: str, mode: str) -> dict:
    outcome = run_job(EngineJob(body=text, mode=mode, seed=1), on_event=lambda _: None,
                      on_progress=lambda _: None)
    return outcome.report["summary"]


@pytest.mark.parametrize("policy", ["nat", "usip", "transparent"])
@pytest.mark.parametrize("time", [
    {"start": {"rate_per_s": 20_000}, "close": "rst", "hold_us": 500},
    {"start": {"spread_us": 2_000}, "close": "none"},
])
def test_a_form_with_start_times_runs_on_both_paths_with_one_verdict(settings, policy, time):
    """Run ▶ (trace) and Verify (batch) take the form's timed scenario alike."""
    settings.RUN_TRACE_MAX_FLOWS = max(settings.RUN_TRACE_MAX_FLOWS, 200)
    text = scenario_yaml_from_builder(_generated(policy, **time))
    trace, batch = _run(text, "trace"), _run(text, "batch")
    assert trace["flows"] == batch["flows"] == 200
    assert trace["symmetric"] + trace["handed_off"] == 200      # none refused or lost
    figures = {k: v for k, v in trace.items() if not isinstance(v, dict | list)}
    assert figures == {k: batch[k] for k in figures}
