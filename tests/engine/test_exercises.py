"""Exercise files (engine/exercises): the format's errors with their line and key path,
hostile input at the loader, limits, variants and their seeds, grading rules, and the
``python -m engine exercise`` command line (exit statuses, JSON shape)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import ConfigError, ExerciseError, GradingTimeout
from engine.exercises import (
    MAX_QUESTIONS,
    build_variant,
    grade,
    list_pack,
    load_exercise,
    load_exercise_file,
    solve,
    student_view,
    variant_count,
    variant_seed,
)

ROOT = Path(__file__).resolve().parents[2]
BASICS = ROOT / "engine/exercises/pack/01-rss-basics.yaml"

TINY = """\
schema_version: 1
id: tiny
title: Tiny
parameters:
  cores: {choice: [2, 4]}
  client: {address: 198.51.100.0/24}
scenario:
  schema_version: 1
  name: tiny
  system: {cores: "{{cores}}", nic: {hash_bits: 3}}
  services: [{name: web, vip: 192.0.2.10, vport: 80, policy: nat, servers: ["10.0.0.1:80"]}]
  traffic: {flows: [{client: "{{client}}:4000", service: web}]}
questions:
  - id: steer
    kind: steering
    prompt: "Where does {{client}} go?"
    packet: {src: "{{client}}", dst: 192.0.2.10, sport: 4000, dport: 80}
    attempts: 2
    hints: [{text: "low bits", cost: 0.25}]
  - id: pick
    kind: concept
    prompt: Pick
    choices: [{id: a, text: A, correct: true}, {id: b, text: B, feedback: "no"}]
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "engine", "exercise", *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def problems_of(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ExerciseError) as caught:
        load_exercise(text)
    return [(p.line, p.path, p.message) for p in caught.value.problems]


# ---------------------------------------------------------------------------- the format

def test_a_valid_exercise_loads():
    exercise = load_exercise(TINY)
    assert [q.kind for q in exercise.questions] == ["steering", "concept"]
    assert variant_count(exercise.parameters) == 2 * 254


def test_every_problem_has_its_line_and_key_path():
    text = TINY.replace("kind: concept", "kind: concpt").replace(
        "attempts: 2", "attempts: 0\n    colour: red")
    found = problems_of(text)
    assert (18, "questions[0].attempts", "expected a number >= 1, got 0") in found
    assert any(line == 19 and path == "questions[0].colour" and "unknown key" in message
               for line, path, message in found)
    assert (22, "questions[1].kind", "expected one of steering, port, settings, fragments, "
            "table, number, concept, got 'concpt'") in found


def test_an_unknown_placeholder_is_named_at_its_line():
    found = problems_of(TINY.replace('prompt: "Where does {{client}} go?"',
                                     'prompt: "Where does {{clinet}} go?"'))
    assert found == [(16, "questions[0].prompt",
                      "expected a parameter among client, cores, got {{clinet}}")]


def test_a_scenario_problem_is_reported_at_the_exercise_line():
    found = problems_of(TINY.replace("policy: nat", "policy: natt"))
    assert len(found) == 1
    line, path, message = found[0]
    assert (line, path) == (11, "scenario.services[0].policy")
    assert "nat, usip, transparent" in message


def test_an_example_base_and_set_paths():
    base = 'example: nat-microsoft\nset: {system.cores: "{{cores}}"}\n'
    text = TINY.split("scenario:")[0] + base + "questions:" + TINY.split("questions:")[1]
    exercise = load_exercise(text)
    assert build_variant(exercise, 3).scenario.system.cores in (2, 4)
    found = problems_of(text.replace("example: nat-microsoft", "example: nope"))
    assert found[0][1] == "example" and "nat-microsoft" in found[0][2]


@pytest.mark.parametrize("edit, path, words", [
    (lambda t: t.replace("attempts: 2", "attempts: 1000"), "questions[0].attempts", "<= 100"),
    (lambda t: t.replace("cores: {choice: [2, 4]}", "cores: {range: {low: 0, high: 99999999999}}"),
     "parameters.cores.range", "at most 4294967296 values"),
    (lambda t: t.replace("cores: {choice: [2, 4]}", "cores: {range: {low: 5, high: 1}}"),
     "parameters.cores.range", "high >= low"),
])
def test_limits_name_the_field(edit, path, words):
    found = problems_of(edit(TINY))
    assert any(p == path and words in m for _, p, m in found), found


def test_too_many_questions_is_refused():
    question = "  - {id: qID, kind: concept, prompt: P, number: {value: 1}}\n"
    text = TINY.split("questions:")[0] + "questions:\n" + "".join(
        question.replace("ID", str(i)) for i in range(MAX_QUESTIONS + 1))
    found = problems_of(text)
    assert found == [(found[0][0], "questions", f"expected at most {MAX_QUESTIONS} items, "
                                                f"got {MAX_QUESTIONS + 1}")]


# ---------------------------------------------------------------------------- hostile input

def test_deep_nesting_is_one_problem_not_a_crash():
    found = problems_of("a: " + "[" * 100_000 + "]" * 100_000)
    assert len(found) == 1 and "nesting at most" in found[0][2]


def test_a_huge_integer_is_refused_with_its_line():
    found = problems_of(TINY.replace("attempts: 2", "attempts: " + "9" * 5000))
    assert len(found) == 1 and found[0][0] == 18 and "1000 digits" in found[0][2]


def test_an_oversized_or_endless_file_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 300_000)
    with pytest.raises(ExerciseError, match="expected at most 262144 bytes"):
        load_exercise_file(big)
    with pytest.raises(ExerciseError, match="expected at most"):
        load_exercise_file("/dev/zero")


def test_an_alias_bomb_is_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8))
    found = problems_of(bomb)
    assert len(found) == 1 and "values (aliases expanded)" in found[0][2]


# ---------------------------------------------------------------------------- variants and seeds

def test_variants_are_deterministic_and_differ_by_seed():
    exercise = load_exercise_file(BASICS)
    assert variant_count(exercise.parameters) >= 100
    first = student_view(build_variant(exercise, 5))
    assert first == student_view(build_variant(exercise, 5))
    prompts = {student_view(build_variant(exercise, seed))["prompt"] for seed in range(6)}
    assert len(prompts) == 6


def test_the_student_view_holds_no_solution():
    exercise = load_exercise(TINY)
    view = student_view(build_variant(exercise, 1))
    text = json.dumps(view)
    assert '"correct"' not in text and "low bits" not in text and '"feedback"' not in text
    assert view["questions"][0]["answer_fields"] == ["hash", "bucket", "core"]
    assert view["questions"][0]["hints"] == [{"index": 0, "cost": 0.25}]


def test_variant_seed_differs_per_student_reset_and_secret():
    seeds = {variant_seed(b"k", "ex", student, reset)
             for student in ("alice", "bob") for reset in (0, 1)}
    assert len(seeds) == 4
    assert variant_seed(b"k", "ex", "alice", 0) == variant_seed(b"k", "ex", "alice", 0)
    assert variant_seed(b"k2", "ex", "alice", 0) != variant_seed(b"k", "ex", "alice", 0)
    assert variant_seed(b"k", "ex1", "alice", 0) != variant_seed(b"k", "ex", "1alice", 0)
    assert all(0 <= seed < 2 ** 63 for seed in seeds)
    with pytest.raises(ConfigError, match="reset"):
        variant_seed(b"k", "ex", "alice", -1)
    with pytest.raises(ConfigError, match="secret"):
        variant_seed("k", "ex", "alice", 0)


def test_a_bad_seed_names_the_field():
    with pytest.raises(ConfigError, match="seed"):
        build_variant(load_exercise(TINY), -1)


# ---------------------------------------------------------------------------- grading rules

def test_reference_scores_full_and_hints_attempts_and_allow_list_apply():
    exercise = load_exercise(TINY)
    answers = solve(exercise, 2)
    assert grade(exercise, 2, answers).score == exercise.max_score
    hinted = grade(exercise, 2, answers, hints={"steer": 1})
    assert hinted.questions[0].points == 0.75 and hinted.questions[0].hint_cost == 0.25
    late = grade(exercise, 2, answers, attempts={"steer": 3})
    assert late.questions[0].outcome == "no-attempts-left" and late.questions[0].points == 0
    extra = grade(exercise, 2, {"steer": {**answers["steer"], "table": [0]}})
    assert extra.questions[0].outcome == "invalid"
    assert "may set only hash, bucket, core" in extra.questions[0].details[0]


def test_a_prediction_is_partly_right_and_hidden_until_the_last_attempt():
    exercise = load_exercise(TINY)
    answers = solve(exercise, 2)
    wrong = {**answers["steer"], "hash": "0x0"}
    first = grade(exercise, 2, {"steer": wrong}).questions[0]
    assert first.outcome == "partial" and round(first.points, 3) == round(2 / 3, 3)
    assert first.expected is None and "hash" not in first.packets[0]
    assert first.packets[0]["src"].startswith("198.51.100.")
    last = grade(exercise, 2, {"steer": wrong}, attempts={"steer": 2}).questions[0]
    assert last.expected is not None and last.packets[0]["core"] == answers["steer"]["core"]


def test_a_wrong_form_is_invalid_not_an_error():
    exercise = load_exercise(TINY)
    result = grade(exercise, 2, {"steer": {"hash": "zz"}, "pick": {"choice": "q"}})
    assert [q.outcome for q in result.questions] == ["invalid", "invalid"]
    assert result.score == 0


def test_grading_times_out_with_a_clear_message():
    exercise = load_exercise_file(ROOT / "engine/exercises/pack/05-transparent-handoffs.yaml")
    answers = solve(exercise, 1)
    with pytest.raises(GradingTimeout, match="grading within 0 s"):
        grade(exercise, 1, answers, timeout_s=0.0)


def test_a_design_answer_shows_the_packets_it_implies():
    exercise = load_exercise_file(ROOT / "engine/exercises/pack/03-nat-port.yaml")
    answers = solve(exercise, 0)
    port = dict(answers["port"])
    right = grade(exercise, 0, {"port": port}).questions[0]
    assert right.outcome == "correct" and {"hash", "bucket", "core"} <= set(right.packets[0])
    port["port"] += 1
    other = grade(exercise, 0, {"port": port}).questions[0]
    assert other.packets[0]["dport"] == port["port"]
    assert (other.outcome == "correct") == (other.packets[0]["core"] == right.packets[0]["core"])


def test_every_pack_file_loads():
    files = list_pack()
    assert len(files) >= 10
    kinds = set()
    for path in files:
        exercise = load_exercise_file(path)
        assert len(exercise.questions) >= 3
        assert sum(q.kind != "concept" for q in exercise.questions) >= 2
        kinds |= {q.kind for q in exercise.questions}
    assert kinds == {"steering", "port", "settings", "fragments", "table", "number", "concept"}


# ---------------------------------------------------------------------------- the command line

def test_cli_lint_variant_solve_grade(tmp_path):
    lint = cli("lint", str(BASICS), "--seeds", "2")
    assert lint.returncode == 0, lint.stderr
    assert "clean" in lint.stdout
    view = cli("variant", str(BASICS), "--seed", "3", "--json")
    assert view.returncode == 0 and json.loads(view.stdout)["seed"] == 3
    assert '"correct"' not in view.stdout
    solved = cli("solve", str(BASICS), "--seed", "3")
    assert solved.returncode == 0 and solved.stdout.startswith("schema_version: 1")
    answers = tmp_path / "answers.yaml"
    answers.write_text(solved.stdout)
    graded = cli("grade", str(BASICS), "--seed", "3", "--answers", str(answers), "--json")
    assert graded.returncode == 0, graded.stderr
    result = json.loads(graded.stdout)
    assert result["score"] == result["max_score"] == 6
    assert {"id", "points", "outcome", "feedback", "packets"} <= set(result["questions"][0])
    answers.write_text(solved.stdout.replace("choice: a", "choice: b"))
    lower = cli("grade", str(BASICS), "--seed", "3", "--answers", str(answers), "--json")
    assert lower.returncode == 1 and json.loads(lower.stdout)["score"] == 5


def test_cli_bad_input_exits_2_with_every_problem(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(TINY.replace("attempts: 2", "attempts: 0").replace("kind: concept",
                                                                         "kind: nope"))
    result = cli("lint", str(broken))
    assert result.returncode == 2
    assert "line 18: questions[0].attempts" in result.stderr and "line 21" in result.stderr
    answers = tmp_path / "answers.yaml"
    answers.write_text("schema_version: 1\nanswers: {steer: 3}\n")
    bad = cli("grade", str(BASICS), "--seed", "1", "--answers", str(answers))
    assert bad.returncode == 2 and "line 2: answers.steer" in bad.stderr
    assert cli("variant", str(BASICS), "--seed", "-1").returncode == 2
    assert cli("grade", str(BASICS), "--seed", "1", "--answers", "/dev/zero").returncode == 2


def test_cli_schema_is_json():
    result = cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "RSS Lab exercise" and "questions" in schema["properties"]
