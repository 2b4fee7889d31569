"""Comparison runs: the cross product's cells, what each key and policy costs, and the
distribution schemes the patent contrasts with flow-based RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.errors import CompareError
from engine.examples import EXAMPLES_DIR, load_example
from engine.runs.compare import SCHEMES, compare_scenario, parse_vary, scheme_cores
from engine.scenarios.traffic import build_flow_arrays

ROOT = Path(__file__).resolve().parents[2]


def test_cross_product_has_every_cell_in_order():
    vary = parse_vary(["key=microsoft,symmetric", "policy=nat,usip,transparent"])
    result = compare_scenario(load_example("transparent-microsoft"), vary, schemes=())
    cells = [(c.settings["key"], c.settings["policy"]) for c in result.cells]
    assert cells == [(k, p) for k in ("microsoft", "symmetric")
                     for p in ("nat", "usip", "transparent")]
    assert all(c.flows == 5000 and c.error is None for c in result.cells)
    assert result.fixed == {"strategy": "solve", "transform": "none", "handoff": "message"}
    by = {(c.settings["key"], c.settings["policy"]): c for c in result.cells}
    assert by["symmetric", "transparent"].handed_off == 0
    assert by["symmetric", "transparent"].handoff_copies == 0
    assert by["microsoft", "transparent"].handed_off > 0
    assert by["microsoft", "transparent"].handoff_copies == by["microsoft", "transparent"
                                                               ].handed_off
    for key in ("microsoft", "symmetric"):
        for policy in ("nat", "usip"):
            assert by[key, policy].symmetric_rate == 1.0
            assert by[key, policy].port_capacity and min(by[key, policy].port_capacity) > 0
        assert by[key, "transparent"].port_capacity is None


def test_schemes_model_balance_and_affinity():
    result = compare_scenario(load_example("transparent-microsoft"),
                              parse_vary(["policy=nat"]))
    by = {c.label: c for c in result.cells}
    assert set(by) == {"policy=nat", *[s for s in SCHEMES if s != "rss"]}
    packet = by["per-packet"]
    assert packet.fairness == max(c.fairness for c in result.cells)
    assert max(packet.core_load) - min(packet.core_load) <= 1
    assert packet.handed_off > 0.8 * packet.flows  # about 1 in 8 by chance only
    assert by["per-vserver"].symmetric_rate == 1.0 and by["per-nic"].symmetric_rate == 1.0
    assert by["per-nic"].fairness == pytest.approx(1 / 8)
    assert by["per-nic"].core_load[0] == 2 * by["per-nic"].flows
    function = by["per-function"]
    assert function.symmetric == 0 and function.handoff_copies == 2 * function.flows
    assert function.core_load[0] == sum(function.core_load[1:])
    assert by["policy=nat"].symmetric_rate == 1.0 and by["policy=nat"].fairness > 0.99


def test_scheme_cores_per_vserver_follows_services():
    scenario = load_example("heavy-hitters")
    flows = build_flow_arrays(scenario)
    request, response, _ = scheme_cores("per-vserver", flows, cores=8,
                                        services=scenario.services)
    assert (request == response).all()
    assert set(np.unique(request).tolist()) == {0, 1, 2, 3}  # four services, cores 4-7 idle
    with pytest.raises(Exception, match="scheme: expected"):
        scheme_cores("per-moon", flows, cores=8)


def test_a_combination_that_cannot_run_is_reported_not_raised():
    result = compare_scenario(load_example("nat-microsoft"),
                              parse_vary(["transform=none,sort"]), schemes=())
    assert result.cells[0].error is None
    assert "not linear" in result.cells[1].error


def test_comparison_is_deterministic():
    vary = parse_vary(["key=microsoft,random:3"])
    one = compare_scenario(load_example("nat-microsoft"), vary).as_dict()
    two = compare_scenario(load_example("nat-microsoft"), vary).as_dict()
    assert one == two


@pytest.mark.parametrize(("specs", "message"), [
    (["polcy=nat"], "--vary: expected a setting among key, policy"),
    (["policy=nat,natt"], "--vary policy: expected one of nat, usip, transparent, got 'natt'"),
    (["key=zz"], "--vary key: expected microsoft, symmetric"),
    (["policy"], "--vary: expected NAME=VALUE"),
    (["policy=nat", "policy=usip"], "--vary policy: expected each setting once"),
    (["scheme="], "--vary scheme: expected at least one value"),
])
def test_parse_vary_errors_name_field_expected_and_got(specs, message):
    with pytest.raises(CompareError) as error:
        parse_vary(specs)
    assert message in str(error.value)


def test_cli_compare_json_and_errors(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "engine", "compare",
            str(EXAMPLES_DIR / "transparent-symmetric.yaml"), "--vary", "key=microsoft,symmetric",
            "--vary", "scheme=rss,per-packet", "--json", "--html", str(tmp_path / "c.html")]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [c["label"] for c in data["cells"]] == ["key=microsoft", "key=symmetric",
                                                   "per-packet"]
    assert (tmp_path / "c.html").stat().st_size > 100_000
    bad = subprocess.run(args[:5] + ["--vary", "strategy=fast"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: --vary strategy: expected one of scan, solve, "
                                  "got 'fast'")


def test_a_vary_mapping_is_checked_and_counted_as_the_comparison_will_run_it():
    import pytest

    from engine.errors import CompareError
    from engine.runs.compare import MAX_CELLS, count_cells, parse_vary_mapping

    vary = parse_vary_mapping({"key": ["microsoft", "symmetric"], "policy": "nat"})
    assert vary == {"key": ("microsoft", "symmetric"), "policy": ("nat",)}
    assert count_cells(vary) == 2 + 4  # two RSS cells, then the four other schemes
    assert count_cells({**vary, "scheme": ("rss",)}) == 2
    with pytest.raises(CompareError) as error:
        parse_vary_mapping({"key": [f"random:{n}" for n in range(MAX_CELLS + 1)]})
    assert (error.value.field, error.value.expected) == ("vary", f"at most {MAX_CELLS} cells")
    with pytest.raises(CompareError) as error:
        parse_vary_mapping({"policy": [1]}, field="body.vary")
    assert error.value.field == "body.vary.policy"
