"""The one verdict vocabulary (symmetric, handed off, refused, asymmetric): rates over
every flow asked for, a run without checks passing only when it has flows and none is
refused or asymmetric, and a scenario without traffic refused as bad input."""

from __future__ import annotations

import numpy as np
import pytest

from engine.appliance.config import SystemConfig
from engine.appliance.verdicts import VERDICTS, clean_pass, summarize
from engine.errors import ScenarioError, TrafficError
from engine.examples import EXAMPLES_DIR, load_example
from engine.paths.batch import random_flow_arrays, run_batch
from engine.runs.report import render_report_html
from engine.runs.run import verify_scenario
from engine.scenarios.scenario import load_scenario
from engine.scenarios.scenario.checks import evaluate_checks
from engine.scenarios.traffic import count_flows
from tests.engine.test_verify_cli import cli


def without_checks(name: str) -> str:
    text = (EXAMPLES_DIR / f"{name}.yaml").read_text()
    return text[:text.index("\nchecks:")] + "\n"


def test_the_vocabulary_is_the_four_verdicts():
    assert VERDICTS == ("symmetric", "handed-off", "asymmetric", "refused")


def test_rates_divide_by_every_flow_asked_for():
    summary = summarize(cores=2, request_core=[0, 1, 1, 0], response_core=[0, 1, -1, -1],
                        verdict=["symmetric", "symmetric", "refused", "refused"],
                        copies=[0, 0, 0, 0])
    assert summary.refused == 2 and summary.symmetric_rate == 0.5
    report = verify_scenario(load_example("singular-key-usip"))
    summary = report.summary
    assert summary.refused > 500
    assert summary.symmetric_rate == pytest.approx(summary.symmetric / summary.flows)
    assert summary.symmetric_rate < 0.6


def test_a_run_without_checks_passes_only_when_nothing_is_refused_or_asymmetric(tmp_path):
    clean = verify_scenario(load_scenario(without_checks("nat-microsoft")))
    assert not clean.checks and clean.passed and clean_pass(clean.summary)
    refused = verify_scenario(load_scenario(without_checks("singular-key-usip")))
    assert not refused.checks and not refused.passed

    path = tmp_path / "refusing.yaml"
    path.write_text(without_checks("singular-key-usip"))
    result = cli("verify", str(path))
    assert result.returncode == 1, result.stderr
    flows = refused.summary.flows
    assert (f"FAIL: no checks, and of {flows} flows {refused.summary.refused} were refused "
            f"and 0 asymmetric") in result.stdout
    path.write_text(without_checks("nat-microsoft"))
    result = cli("verify", str(path))
    assert result.returncode == 0, result.stderr
    assert "PASS: no checks, and all 5000 flows came back to their owner core" in result.stdout


def test_a_transparent_run_that_loses_responses_does_not_pass_clean():
    config = SystemConfig(cores=4, policy="transparent", handoff="none")
    summary = run_batch(config, random_flow_arrays(200, np.random.default_rng(3))).summary
    assert summary.asymmetric > 0 and not clean_pass(summary)


def test_a_scenario_without_traffic_is_bad_input(tmp_path):
    text = without_checks("nat-microsoft")
    text = text[:text.index("traffic:")] + "traffic:\n  flows: []\n"
    scenario = load_scenario(text)
    with pytest.raises(TrafficError) as caught:
        count_flows(scenario)
    assert caught.value.code == "no_traffic" and caught.value.field == "traffic"
    with pytest.raises(TrafficError):
        verify_scenario(scenario, mode="trace")
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    result = cli("verify", str(path))
    assert result.returncode == 2
    assert "no traffic" in result.stderr and result.stderr.count("\n") == 1


def test_older_scenarios_may_still_check_allocation_failures():
    [result] = evaluate_checks({"allocation_failures": "== 0"}, {"refused": 3})
    assert not result.passed and result.actual == 3


def test_forwarding_is_set_by_route_and_handoff_stays_its_older_name():
    text = without_checks("nat-microsoft")
    routed = load_scenario(text + "forwarding:\n  route: neighbour\n")
    assert routed.build_system_config().handoff == "neighbour"
    older = load_scenario(text + "handoff: shared-buffer\n")
    assert older.build_system_config().handoff == "shared-buffer"
    with pytest.raises(ScenarioError) as caught:
        load_scenario(text + "handoff: message\nforwarding:\n  route: none\n")
    assert "not both" in str(caught.value)


@pytest.mark.parametrize("route, copies, hops", [
    ("message", 1, 1), ("shared-buffer", 2, 1), ("control-core", 2, 2), ("none", 0, 0)])
def test_misdirected_nat_responses_are_forwarded_by_every_route(route, copies, hops):
    """nat chooses ports for symmetry; with the request-direction bug (wrong_direction)
    responses land elsewhere and, as for any policy, are forwarded to their owner."""
    config = SystemConfig(cores=4, policy="nat", wrong_direction=True, handoff=route)
    result = run_batch(config, random_flow_arrays(300, np.random.default_rng(5)))
    summary = result.summary
    misdirected = int((result.response_core != result.request_core).sum())
    assert misdirected > 100
    if route == "none":
        assert summary.asymmetric == misdirected and summary.handed_off == 0
    else:
        assert summary.handed_off == misdirected and summary.asymmetric == 0
        assert summary.handoff_copies == copies * misdirected
        assert summary.handoff_hops == hops * misdirected


@pytest.mark.parametrize("policy", ["nat", "usip"])
def test_addresses_only_hashing_is_said_in_the_report_and_forwarded(policy):
    """With ``hash_types: [ipv4]`` no rewritten port steers a response: the report says so
    (it used to say "a fitting port can be computed"), and misdirected responses are
    forwarded to their owner rather than lost."""
    text = without_checks("nat-microsoft").replace(
        "    hash_bits: 7", "    hash_bits: 7\n    hash_types: [ipv4]").replace(
        "policy: nat", f"policy: {policy}").replace("count: 5000", "count: 1000")
    scenario = load_scenario(text)
    batch = verify_scenario(scenario)
    trace = verify_scenario(scenario, mode="trace")
    for summary in (batch.summary, trace.summary):
        assert summary.port_map.startswith(
            "The NIC hashes TCP and UDP IPv4 responses without their ports")
        assert "misdirected responses are forwarded to their owner (message)" in \
            summary.port_map
        assert summary.asymmetric == 0 and summary.handed_off > 600
        # nat chooses its IP (2 per core here): the share it steers home is counted;
        # usip cannot choose, and the report names forwarding as the answer
        assert summary.ip_choice == (1000 if policy == "nat" else 0)
        assert summary.ip_steered == (summary.symmetric if policy == "nat" else 0)
        assert "usip and transparent can change nothing that steers them" in summary.port_map
    assert batch.summary.handed_off == trace.summary.handed_off
    assert batch.summary.ip_steered == trace.summary.ip_steered
    full = verify_scenario(load_example("nat-microsoft")).summary.port_map
    assert "a fitting port can be computed" in full


def test_nat_addresses_only_example_steers_by_ip_on_both_paths_and_the_pool_fits_all():
    """The ``nat-addresses-only`` example: 741 of 2,000 responses steered home by the IP
    chosen among the core's 4, the other 1,259 forwarded, none lost or refused, the same
    on both paths and in the HTML report's words; with the pool of all 32 IPs, every
    response is steered home."""
    scenario = load_example("nat-addresses-only")
    batch = verify_scenario(scenario)
    trace = verify_scenario(scenario, mode="trace")
    for summary in (batch.summary, trace.summary):
        assert (summary.ip_choice, summary.ip_steered, summary.handed_off) == (2000, 741, 1259)
        assert summary.asymmetric == summary.refused == 0
        assert "nat chooses one of its core's 4 IPs" in summary.port_map
        assert summary.ip_choice_line().startswith(
            "IP choice: 741 of 2000 nat flows hashed on addresses only steered home")
    assert "IP choice: 741 of 2000 nat flows" in render_report_html(batch)
    pool = load_scenario((EXAMPLES_DIR / "nat-addresses-only.yaml").read_text().replace(
        "nat_ip_choice: core", "nat_ip_choice: pool"))
    summary = verify_scenario(pool).summary
    assert summary.ip_steered == summary.symmetric == 2000
    assert "an IP from the pool of all 32 cores' IPs" in summary.port_map
