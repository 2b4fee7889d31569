"""The lab form's controls for issue 12 (the flow distributor's rules, its correct-core check,
the RSS-unaware NIC, an indirection-table change, the forwarding route and flow start times):
builder fields -> scenario YAML -> the engine, and a scenario file back into the same fields;
every problem the engine finds lands on the form field it came from."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ScenarioError
from engine.scenarios.scenario import load_scenario
from labsite.lab.builder import (
    PRESETS,
    builder_field_of,
    builder_fields_from_scenario,
    scenario_yaml_from_builder,
)
from labsite.lab.errors import LabInputError

RULES = [
    {"kind": "prefix", "prefix": "66.0.0.0/8", "match_on": "src", "core": 3},
    {"kind": "flow", "client": "199.92.111.2:14230", "server": "10.0.0.1:8080",
     "proto": "tcp", "core": 1},
    {"kind": "prefix", "prefix": "10.0.0.0/24", "match_on": "dst", "core": 2},
]


def _fields(**changes):
    fields = copy.deepcopy(PRESETS["nat"])
    fields["traffic"]["flows"][1]["start_us"] = 40
    fields.update({"rss_aware": False, "receive_core": 2, "handoff": "shared-buffer",
                   "distributor": {"correct_core_check": False, "rules": copy.deepcopy(RULES)},
                   **changes})
    return fields


def test_every_new_control_reaches_the_engine_and_comes_back_into_the_form():
    fields = _fields(table_change={"at_us": 50, "table": [3, 2, 1, 0] * 32})
    text = scenario_yaml_from_builder(fields)
    scenario = load_scenario(text)
    nic = scenario.system.nic
    assert (nic.rss_aware, nic.receive_core) == (False, 2)
    assert nic.table_change.at_us == 50 and list(nic.table_change.table) == [3, 2, 1, 0] * 32
    assert scenario.distributor.correct_core_check is False
    rules = scenario.distributor.rules
    assert [(r.prefix, r.match_on, r.core) for r in rules[::2]] == [
        ("66.0.0.0/8", "src", 3), ("10.0.0.0/24", "dst", 2)]
    assert (rules[1].flow.client, rules[1].flow.server, rules[1].core) == (
        "199.92.111.2:14230", "10.0.0.1:8080", 1)
    assert [f.start_us for f in scenario.sources[0].flows] == [0, 40, 0]
    assert scenario.forwarding_route == "shared-buffer"
    assert yaml.safe_load(text)["forwarding"] == {"route": "shared-buffer"}

    loaded = builder_fields_from_scenario(text)
    assert loaded["unshown"] == []
    back = loaded["fields"]
    for key in ("rss_aware", "receive_core", "table_change", "distributor", "handoff"):
        assert back[key] == fields[key], key
    assert back["traffic"]["flows"][1]["start_us"] == 40
    assert scenario_yaml_from_builder(back) == text


def test_the_defaults_write_nothing_new_so_older_scenarios_read_as_before():
    data = yaml.safe_load(scenario_yaml_from_builder(PRESETS["nat"]))
    assert "distributor" not in data
    assert not {"rss_aware", "receive_core", "table_change"} & set(data["system"]["nic"])
    assert "start_us" not in data["traffic"]["flows"][0]
    # … and such a file loads into the form with the controls at their defaults (the page
    # fills what is missing from DEFAULTS: checked, checked, core 0, no change, no rules).
    fields = builder_fields_from_scenario(scenario_yaml_from_builder(PRESETS["nat"]))["fields"]
    assert not {"rss_aware", "receive_core", "table_change", "distributor"} & set(fields)


def test_the_older_handoff_key_loads_as_the_route_and_is_written_as_forwarding():
    text = scenario_yaml_from_builder(PRESETS["nat"]).replace(
        "forwarding: {route: message}", "handoff: shared-buffer")
    assert load_scenario(text).forwarding_route == "shared-buffer"
    fields = builder_fields_from_scenario(text)["fields"]
    assert fields["handoff"] == "shared-buffer"
    again = scenario_yaml_from_builder(fields)
    assert yaml.safe_load(again)["forwarding"] == {"route": "shared-buffer"}
    assert "handoff" not in yaml.safe_load(again)
    assert load_scenario(again).forwarding_route == "shared-buffer"


def test_a_file_with_defaults_spelled_out_loads_into_the_form_with_them():
    text = scenario_yaml_from_builder(PRESETS["nat"]).replace(
        "forwarding: {route: message}",
        "forwarding: {route: message}\ndistributor:\n  correct_core_check: true\n  rules:\n"
        "  - {core: 1, flow: {client: '1.2.3.4:5', server: '10.0.0.1:8080'}}\n"
        "  - {core: 0, prefix: 192.0.2.0/24}")
    load_scenario(text)
    form = builder_fields_from_scenario(text)
    assert form["unshown"] == []
    # a rule's left-out proto and match_on show as the engine's defaults
    assert form["fields"]["distributor"] == {"correct_core_check": True, "rules": [
        {"kind": "flow", "client": "1.2.3.4:5", "server": "10.0.0.1:8080", "core": 1},
        {"kind": "prefix", "prefix": "192.0.2.0/24", "match_on": "src", "core": 0}]}
    rules = load_scenario(scenario_yaml_from_builder(form["fields"])).distributor.rules
    assert rules[0].flow.proto == "tcp" and rules[1].match_on == "src"


def _problem_fields(fields) -> dict[str, str]:
    with pytest.raises(ScenarioError) as error:
        load_scenario(scenario_yaml_from_builder(fields))
    return {builder_field_of(p.path): p.message for p in error.value.problems}


def test_the_engines_problems_land_on_the_form_fields_they_came_from():
    fields = _fields(receive_core=9, table_change={"at_us": 5, "table": [0, 1, 7]})
    fields["distributor"]["rules"][2]["core"] = 7
    fields["distributor"]["rules"][1]["server"] = "[2001:db8::1]:80"
    found = _problem_fields(fields)
    assert set(found) == {"receive_core", "table_change.table", "distributor.rules[2].core",
                          "distributor.rules[1].client"}
    assert found["distributor.rules[2].core"] == "expected a core 0-3, got 7"
    assert "one address family" in found["distributor.rules[1].client"]

    fields = _fields()
    fields["traffic"]["flows"][2]["start_us"] = -1
    fields["distributor"]["rules"][0]["prefix"] = ""
    fields["distributor"]["rules"][1]["client"] = "nope"
    fields["distributor"]["rules"][2]["core"] = None           # a blank core input
    assert set(_problem_fields(fields)) == {
        "traffic.flows[2].start_us", "distributor.rules[0].prefix",
        "distributor.rules[1].client", "distributor.rules[2].core"}

    # what needs two controls lands on the one to change: the route, the MTU
    found = _problem_fields(_fields(handoff="none", service={**PRESETS["nat"]["service"],
                                                             "mtu": 576}))
    assert set(found) == {"handoff", "service.mtu"}
    assert "other than none" in found["handoff"]


@pytest.mark.parametrize(("path", "field"), [
    ("distributor.rules[1].core", "distributor.rules[1].core"),
    ("distributor.rules[0].prefix", "distributor.rules[0].prefix"),
    ("distributor.rules[3].match_on", "distributor.rules[3].match_on"),
    ("distributor.rules[2].flow.server", "distributor.rules[2].server"),
    ("distributor.rules[2].flow.proto", "distributor.rules[2].proto"),
    ("distributor.rules[2].flow", "distributor.rules[2].client"),
    ("distributor.rules[4]", "distributor.rules[4].kind"),
    ("distributor.rules", "distributor.rules"),
    ("distributor.correct_core_check", "distributor.correct_core_check"),
    ("system.nic.rss_aware", "rss_aware"), ("system.nic.receive_core", "receive_core"),
    ("system.nic.table_change.table[5]", "table_change.table"),
    ("system.nic.table_change.at_us", "table_change.at_us"),
    ("system.nic.table_change", "table_change"), ("system.nic.table[3]", "table"),
    ("forwarding.route", "handoff"), ("handoff", "handoff"),
    ("traffic.flows[0].start_us", "traffic.flows[0].start_us"),
])
def test_problem_paths_map_to_the_new_controls(path, field):
    assert builder_field_of(path) == field


@pytest.mark.parametrize(("change", "field"), [
    ({"distributor": {"rules": [{"kind": "range", "core": 1}]}}, "distributor.rules[0].kind"),
    ({"distributor": {"rules": [{"kind": "prefix", "prefix": "1.0.0.0/8", "core": "one"}]}},
     "distributor.rules[0].core"),
    ({"distributor": {"rules": [{"kind": "flow", "client": 5, "core": 1}]}},
     "distributor.rules[0].client"),
    ({"distributor": {"rules": [{"kind": "prefix", "bucket": 1}]}},
     "distributor.rules[0].bucket"),
    ({"distributor": {"rules": "all to 0"}}, "distributor.rules"),
    ({"distributor": {"correct_core_check": "yes"}}, "distributor.correct_core_check"),
    ({"distributor": {"ordered": True}}, "distributor.ordered"),
    ({"rss_aware": "off"}, "rss_aware"), ({"receive_core": 1.5}, "receive_core"),
    ({"table_change": {"at_us": 3}}, "table_change.table"),
    ({"table_change": {"at_us": 3, "table": [0, "x", 1]}}, "table_change.table"),
    ({"table_change": {"at_us": "soon", "table": [0, 1]}}, "table_change.at_us"),
    ({"table_change": [0, 1]}, "table_change"),
])
def test_form_values_of_the_wrong_shape_name_their_field(change, field):
    with pytest.raises(LabInputError) as error:
        scenario_yaml_from_builder({**PRESETS["nat"], **change})
    assert error.value.errors[0]["field"] == field


_ip = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
_endpoint = st.builds(lambda ip, port: f"{ip}:{port}", _ip, st.integers(1, 65535))
_rule = st.one_of(
    st.builds(lambda ip, n, on, core: {"kind": "prefix", "prefix": f"{ip}/32" if n == 32 else
                                       f"{ip.rsplit('.', 1)[0]}.0/24", "match_on": on,
                                       "core": core},
              _ip, st.sampled_from([24, 32]), st.sampled_from(["src", "dst"]),
              st.integers(0, 3)),
    st.builds(lambda c, s, proto, core: {"kind": "flow", "client": c, "server": s,
                                         "proto": proto, "core": core},
              _endpoint, _endpoint, st.sampled_from(["tcp", "udp"]), st.integers(0, 3)))


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(rules=st.lists(_rule, max_size=6), check=st.booleans(), aware=st.booleans(),
       receive=st.integers(0, 3), starts=st.lists(st.integers(0, 10**6), min_size=3,
                                                  max_size=3),
       route=st.sampled_from(["message", "shared-buffer", "control-core", "neighbour"]))
def test_the_form_round_trips_through_the_yaml_exactly(rules, check, aware, receive, starts,
                                                       route):
    fields = copy.deepcopy(PRESETS["nat"])
    for flow, start in zip(fields["traffic"]["flows"], starts, strict=True):
        flow["start_us"] = start
    fields.update(rss_aware=aware, receive_core=receive, handoff=route,
                  distributor={"correct_core_check": check, "rules": rules})
    text = scenario_yaml_from_builder(fields)
    load_scenario(text)                                  # the engine takes what the form wrote
    back = builder_fields_from_scenario(text)
    assert back["unshown"] == []
    assert back["fields"]["traffic"]["flows"] == fields["traffic"]["flows"]
    assert back["fields"]["handoff"] == route
    assert back["fields"].get("rss_aware", True) == aware
    assert back["fields"].get("receive_core", 0) == receive
    assert back["fields"].get("distributor", {"correct_core_check": True, "rules": []}) == {
        "correct_core_check": check, "rules": rules}
    assert scenario_yaml_from_builder(back["fields"]) == text
