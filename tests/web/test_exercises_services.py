"""Exercises in the lab (issue 13): the services and selectors called directly.

Upload and lint, versions, the shipped pack, variant seeds (stored, never derived again),
submitting and grading (the worker's service called in-process: ``django_db`` never
commits, so no task is sent), attempt limits, a double submit counting once, a grading
whose worker died not using an attempt, hints and their cost, resets, late policies,
regrading, rosters, the gradebook's CSV and Markdown sanitisation.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from engine.exercises import PACK_DIR, solve, variant_seed
from labsite.exercises import selectors, services
from labsite.exercises.engine_io import load_version
from labsite.exercises.models import Attempt, Exercise, StudentVariant
from labsite.exercises.rendering import render_markdown
from labsite.lab.errors import LabInputError

pytestmark = pytest.mark.django_db
SECRET = "exercise-secret-for-tests"
BASICS = (PACK_DIR / "01-rss-basics.yaml").read_text()
TOKEN = "t" * 24


@pytest.fixture(autouse=True)
def fixed_secret(settings):
    settings.EXERCISE_SECRET = SECRET


@pytest.fixture
def teacher():
    user = User.objects.create_user("teacher", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="instructor")[0])
    return user


@pytest.fixture
def basics(teacher):
    outcome = services.exercise_upload(user=teacher, text=BASICS)
    assert outcome.problems == [] and outcome.version.number == 1
    exercise = outcome.exercise
    exercise.published = True
    exercise.save()
    return exercise


@pytest.fixture
def alice():
    return User.objects.create_user("alice")


@pytest.fixture
def bob():
    return User.objects.create_user("bob")


def form_of(answers: dict) -> dict:
    """The answer form's fields for an answers mapping (what the page posts)."""
    data = {}
    for qid, fields in answers.items():
        for name, value in fields.items():
            if isinstance(value, list):
                value = ",".join(map(str, value))
            data[f"q-{qid}-{name}"] = str(value)
    return data


def right_answers(exercise: Exercise, variant: StudentVariant) -> dict:
    return solve(load_version(exercise.versions.get()), variant.seed)


def submit_and_grade(user, exercise, data, token=TOKEN) -> Attempt:
    attempt = services.attempt_submit(user=user, exercise=exercise, data=data, token=token)
    services.attempt_grade(attempt.pk)
    attempt.refresh_from_db()
    return attempt


# ---------------------------------------------------------------------------- upload

def test_an_upload_with_a_mistake_is_refused_at_its_line_and_nothing_is_stored(teacher):
    broken = BASICS.replace("    points: 3\n", "    points: three\n")
    line = broken.splitlines().index("    points: three") + 1
    outcome = services.exercise_upload(user=teacher, text=broken)
    assert [p["line"] for p in outcome.problems] == [line]
    assert "points" in outcome.problems[0]["path"]
    assert not Exercise.objects.exists()
    # Fixed: stored as version 1; the same text again stores nothing; an edit is v2.
    first = services.exercise_upload(user=teacher, text=BASICS)
    assert first.created and first.version.number == 1 and first.variants == 245790720
    assert services.exercise_upload(user=teacher, text=BASICS).version is None
    second = services.exercise_upload(user=teacher, text=BASICS.replace("points: 1\n",
                                                                        "points: 2\n", 1))
    assert second.version.number == 2 and not second.created
    assert first.exercise.owner == teacher and not first.exercise.published


def test_upload_limits_have_clear_errors(teacher, settings):
    settings.EXERCISE_UPLOAD_MAX_BYTES = 100
    outcome = services.exercise_upload(user=teacher, text=BASICS)
    assert outcome.problems[0]["message"].startswith("expected an exercise file of at most 100")
    settings.EXERCISE_UPLOAD_MAX_BYTES = 256 * 1024
    too_many = BASICS + "".join(
        f"  - {{id: extra{i}, kind: concept, prompt: x, number: {{value: '1'}}}}\n"
        for i in range(40))
    problems = services.exercise_upload(user=teacher, text=too_many).problems
    assert any("questions" in p["path"] and "32" in p["message"] for p in problems)
    reserved = services.exercise_upload(user=teacher, text=BASICS.replace(
        "id: rss-basics", "id: manage"))
    assert reserved.problems[0]["path"] == "id" and reserved.problems[0]["line"] == 5


def test_the_pack_loads_once_published_and_a_second_load_changes_nothing():
    created = services.exercises_pack_load()
    assert len(created) == 10 and all(e.published and e.owner is None for e in created)
    Exercise.objects.filter(slug="rss-basics").update(published=False)
    assert services.exercises_pack_load() == []
    assert not Exercise.objects.get(slug="rss-basics").published  # left alone


# ---------------------------------------------------------------------------- variants

def test_a_seed_is_derived_from_the_secret_stored_and_never_derived_again(basics, alice, bob,
                                                                         settings):
    mine = services.variant_start(basics, alice)
    assert mine.seed == variant_seed(SECRET.encode(), "rss-basics", str(alice.pk), 0)
    theirs = services.variant_start(basics, bob)
    assert theirs.seed != mine.seed
    settings.EXERCISE_SECRET = "rotated"
    assert services.variant_start(basics, alice).seed == mine.seed
    page_a = selectors.variant_page(basics, mine.seed, variant=mine)
    page_b = selectors.variant_page(basics, theirs.seed, variant=theirs)
    assert page_a["prompt_html"] != page_b["prompt_html"]


def test_secret_defaults_to_a_file_made_once_never_the_secret_key(settings, tmp_path):
    from labsite.exercises.secret import exercise_secret

    settings.EXERCISE_SECRET, settings.VAR_DIR = "", tmp_path
    first = exercise_secret()
    assert first == exercise_secret() == (tmp_path / "exercise_secret").read_text().strip().encode()
    assert settings.SECRET_KEY.encode() != first


# ---------------------------------------------------------------------------- attempts

def test_a_right_answer_scores_full_marks_and_a_wrong_one_does_not(basics, alice, bob):
    variant = services.variant_start(basics, alice)
    right = submit_and_grade(alice, basics, form_of(right_answers(basics, variant)))
    assert right.status == "graded" and right.score == right.max_score == 6
    assert right.numbers == {"steer": 1, "buckets": 1, "core0": 1, "order": 1}
    steer = right.grade["questions"][0]
    assert steer["outcome"] == "correct" and steer["packets"][0]["hash_hex"].startswith("0x")
    services.variant_start(basics, bob)
    wrong = submit_and_grade(bob, basics, {"q-steer-hash": "0x0", "q-steer-bucket": "999",
                                           "q-order-choice": "b"})
    assert wrong.score == 0 and wrong.grade["questions"][0]["outcome"] == "incorrect"
    # A wrong prediction's packet does not give the answer away (not the last attempt).
    assert "hash_hex" not in wrong.grade["questions"][0]["packets"][0]
    assert selectors.variant_score(variant) == 6


def test_a_double_submit_counts_once(basics, alice):
    services.variant_start(basics, alice)
    data = {"q-buckets-value": "8"}
    first = services.attempt_submit(user=alice, exercise=basics, data=data, token=TOKEN)
    again = services.attempt_submit(user=alice, exercise=basics, data=data, token=TOKEN)
    assert again.pk == first.pk and Attempt.objects.count() == 1
    other = services.attempt_submit(user=alice, exercise=basics, data=data, token="u" * 24)
    assert other.pk != first.pk


def test_attempt_limits_are_per_question_and_enforced_by_the_server(basics, alice):
    services.variant_start(basics, alice)
    submit_and_grade(alice, basics, {"q-order-choice": "b"}, token="a" * 24)  # 1 attempt
    with pytest.raises(LabInputError) as refused:
        services.attempt_submit(user=alice, exercise=basics, data={"q-order-choice": "a"},
                                token="b" * 24)
    assert refused.value.errors[0]["field"] == "order"
    assert "all 1 attempts" in refused.value.errors[0]["message"]
    # Other questions still take answers.
    assert submit_and_grade(alice, basics, {"q-buckets-value": "1"}, "c" * 24).status == "graded"
    with pytest.raises(LabInputError, match="answer at least one question"):
        services.attempt_submit(user=alice, exercise=basics, data={}, token="d" * 24)


def test_the_active_cap_refuses_past_two_ungraded_attempts(basics, alice):
    from labsite.exercises.services import ExerciseActiveLimitError

    services.variant_start(basics, alice)
    for token in ("a" * 24, "b" * 24):
        services.attempt_submit(user=alice, exercise=basics, data={"q-buckets-value": "1"},
                                token=token)
    with pytest.raises(ExerciseActiveLimitError) as refused:
        services.attempt_submit(user=alice, exercise=basics, data={"q-buckets-value": "1"},
                                token="c" * 24)
    assert refused.value.status == 429


def test_a_grading_timeout_is_not_counted(basics, alice, monkeypatch):
    from engine.errors import GradingTimeout

    services.variant_start(basics, alice)

    def too_slow(version, attempt):
        raise GradingTimeout("grading", "within 60 s", "longer")

    monkeypatch.setattr(services, "grade_with", too_slow)
    attempt = submit_and_grade(alice, basics, {"q-order-choice": "a"})
    assert attempt.status == "failed" and "not counted" in attempt.error
    assert services.attempts_used(attempt.variant) == {}
    monkeypatch.undo()
    again = submit_and_grade(alice, basics, {"q-order-choice": "a"}, token="z" * 24)
    assert again.status == "graded" and again.numbers == {"order": 1} and again.score == 1


def test_a_worker_that_dies_mid_grade_does_not_use_an_attempt(basics, alice, settings):
    services.variant_start(basics, alice)
    attempt = services.attempt_submit(user=alice, exercise=basics,
                                      data={"q-order-choice": "a"}, token=TOKEN)
    # A worker claims it, then dies: the attempt stays "grading" and nothing finishes it.
    long_ago = timezone.now() - timedelta(seconds=settings.EXERCISE_GRADING_STALE_SECONDS + 1)
    Attempt.objects.filter(pk=attempt.pk).update(status="grading", started_at=long_ago,
                                                 tries=1)
    assert services.attempts_reap_stale() == [attempt.pk]
    attempt.refresh_from_db()
    assert attempt.status == "queued" and "queued again" in attempt.error
    assert services.attempt_grade(attempt.pk) == "graded"   # the re-queued delivery
    assert services.attempt_grade(attempt.pk) is None       # a late re-delivery: nothing
    attempt.refresh_from_db()
    assert attempt.numbers == {"order": 1} and attempt.score == 1
    # Dying on every try: failed and not counted, so the one attempt is still there.
    second = services.attempt_submit(user=alice, exercise=basics,
                                     data={"q-buckets-value": "1"}, token="y" * 24)
    Attempt.objects.filter(pk=second.pk).update(status="grading", started_at=long_ago,
                                                tries=2)
    services.attempts_reap_stale()
    second.refresh_from_db()
    assert second.status == "failed" and "not counted" in second.error
    assert services.attempts_used(second.variant) == {"order": 1}


def test_hints_go_in_order_and_their_cost_comes_off(basics, alice):
    variant = services.variant_start(basics, alice)
    with pytest.raises(LabInputError, match="reveal hint 1 first"):
        services.hint_reveal(variant, "steer", 1)
    assert "12 bytes" in services.hint_reveal(variant, "steer", 0)
    page = selectors.variant_page(basics, variant.seed, variant=variant)
    steer = page["questions"][0]
    assert steer["hints"][0]["text"] and steer["hints"][1]["text"] is None
    assert steer["next_hint"]["cost"] == 0.5
    attempt = submit_and_grade(alice, basics, form_of(
        {"steer": right_answers(basics, variant)["steer"]}))
    assert attempt.hints == {"steer": 1} and attempt.score == 2.5


def test_a_reset_keeps_old_attempts_marked_and_gives_a_new_variant(basics, alice):
    first = services.variant_start(basics, alice)
    submit_and_grade(alice, basics, {"q-order-choice": "a"})
    assert services.variant_reset(basics, alice) == 1
    assert Attempt.objects.get().superseded
    second = services.variant_start(basics, alice)
    assert second.reset == 1 and second.seed != first.seed
    assert second.seed == variant_seed(SECRET.encode(), "rss-basics", str(alice.pk), 1)
    assert selectors.variant_score(second) is None
    # The old question's attempt is back: the limit is per variant.
    assert submit_and_grade(alice, basics, {"q-order-choice": "a"}, "n" * 24).score == 1


def test_late_policies(basics, alice):
    services.variant_start(basics, alice)
    basics.due_at = timezone.now() - timedelta(hours=1)
    basics.late_policy, basics.late_penalty_pct = "closed", 0
    basics.save()
    with pytest.raises(LabInputError, match="closed"):
        services.attempt_submit(user=alice, exercise=basics, data={"q-order-choice": "a"},
                                token=TOKEN)
    basics.late_policy, basics.late_penalty_pct = "penalty", 25
    basics.save()
    attempt = submit_and_grade(alice, basics, {"q-order-choice": "a",
                                               "q-buckets-value": "99999"})
    assert attempt.late and attempt.score == 0.75 and attempt.grade["raw_score"] == 1


def test_regrading_puts_every_attempt_on_the_newest_version(basics, alice, teacher):
    services.variant_start(basics, alice)
    attempt = submit_and_grade(alice, basics, {"q-order-choice": "a"})
    assert attempt.score == 1
    # Version 2: the last question is worth 4 points.
    head, _, tail = BASICS.rpartition("    points: 1\n    attempts: 1")
    assert services.exercise_upload(
        user=teacher, text=head + "    points: 4\n    attempts: 1" + tail).version.number == 2
    assert services.exercise_regrade(basics) == {"regraded": 1, "kept": 0}
    attempt.refresh_from_db()
    assert attempt.version.number == 2 and attempt.score == 4 and attempt.regraded_at


def test_visibility_follows_publication_and_groups(basics, alice, bob, teacher):
    section = Group.objects.create(name="section-a")
    alice.groups.add(section)
    services.exercise_publish(basics, published=True, due_at=None, late_policy="accept",
                              late_penalty_pct=0, groups=[section])
    assert list(selectors.exercise_visible_list(alice)) == [basics]
    assert list(selectors.exercise_visible_list(bob)) == []
    services.exercise_publish(basics, published=False, due_at=None, late_policy="accept",
                              late_penalty_pct=0, groups=[])
    assert list(selectors.exercise_visible_list(alice)) == []
    assert list(selectors.exercise_visible_list(teacher)) == [basics]


# ---------------------------------------------------------------------------- instructors

def test_the_gradebook_csv_escapes_formulas_and_carries_the_seed(basics, alice):
    sneaky = User.objects.create_user("=HYPERLINK(1)")
    for user in (alice, sneaky):
        services.variant_start(basics, user)
    submit_and_grade(alice, basics, {"q-order-choice": "a"})
    rows = list(csv.reader(io.StringIO(selectors.gradebook_csv(basics))))
    assert rows[0][:3] == ["username", "seed", "reset"]
    by_name = {row[0]: row for row in rows[1:]}
    assert set(by_name) == {"alice", "'=HYPERLINK(1)"}
    assert by_name["alice"][1] == str(StudentVariant.objects.get(student=alice).seed)
    assert by_name["alice"][3] == "1" and by_name["alice"][5] == "1"
    assert selectors.csv_cell("-1") == "'-1" and selectors.csv_cell("@x") == "'@x"
    assert selectors.csv_cell("+1") == "'+1" and selectors.csv_cell("a=b") == "a=b"
    book = selectors.gradebook(basics)
    assert book["scores"] == [1.0]
    assert {s["id"]: (s["full"], s["answered"]) for s in book["success"]}["order"] == (1, 1)


def test_a_roster_adds_students_and_shows_new_passwords_once(alice):
    done = services.roster_import("username,password,group\ncarol,,week-3\ndave,pw-dave-123,"
                                  "week-3\nalice,,week-3\n")
    assert [(d.username, d.created) for d in done] == [("carol", True), ("dave", True),
                                                        ("alice", False)]
    assert done[1].password == "pw-dave-123" and len(done[0].password) >= 12
    assert done[2].password == ""
    carol = User.objects.get(username="carol")
    assert carol.check_password(done[0].password)
    assert {g.name for g in carol.groups.all()} == {"student", "week-3"}
    with pytest.raises(LabInputError, match="line 2"):
        services.roster_import("ok\nbad name\n")
    new = services.student_password_reset(carol)
    carol.refresh_from_db()
    assert carol.check_password(new)


def test_markdown_is_rendered_inert():
    html = render_markdown(
        "**bold** <script>alert(1)</script> <img src=x onerror=alert(1)>\n\n"
        "[click](javascript:alert(1)) <a href=\"javascript:alert(2)\" onclick=\"x()\">a</a>"
        " <b onmouseover=\"y()\">b</b> [ok](https://example.org)")
    assert "<strong>bold</strong>" in html
    lowered = html.lower()
    assert "<script" not in lowered and "alert(1)</script>" not in lowered
    assert "onerror" not in lowered and "onclick" not in lowered
    assert "onmouseover" not in lowered and "javascript:" not in lowered
    assert "<img" not in lowered
    assert 'href="https://example.org"' in html


def test_feedback_packets_link_to_the_labs_bit_by_bit_page(basics, alice, bob, client):
    """A graded packet links to /lab/explain/ with its input under the variant's key and
    table, and that page ends in the packet's hash, bucket and core; a wrong prediction's
    packet, whose hash is not revealed, gets no link."""
    variant = services.variant_start(basics, alice)
    right = submit_and_grade(alice, basics, form_of(right_answers(basics, variant)))
    [packet] = selectors.attempt_payload(right)["questions"][0]["packets"]
    client.force_login(alice)
    page = client.get(packet["explain_url"])
    assert page.status_code == 200
    assert (f"hash {packet['hash_hex']} → bucket {packet['bucket']} → core {packet['core']}"
            in page.content.decode())
    services.variant_start(basics, bob)
    wrong = submit_and_grade(bob, basics, {"q-steer-hash": "0x0", "q-steer-bucket": "999",
                                           "q-order-choice": "b"})
    [hidden] = selectors.attempt_payload(wrong)["questions"][0]["packets"]
    assert "explain_url" not in hidden


def test_the_bit_by_bit_page_explains_a_tuple_and_names_a_bad_field(alice, client):
    """Microsoft's first published IPv4 vector, and a clear 400 for a half-given tuple."""
    client.force_login(alice)
    page = client.get("/lab/explain/", {"src": "66.9.149.187", "dst": "161.142.100.80",
                                        "sport": "2794", "dport": "1766"})
    assert page.status_code == 200 and "hash 0x51ccc178" in page.content.decode()
    bad = client.get("/lab/explain/", {"src": "66.9.149.187", "dst": "161.142.100.80",
                                       "sport": "2794"})
    assert bad.status_code == 400 and "expected both ports or neither" in bad.content.decode()
    client.logout()
    assert client.get("/lab/explain/").status_code == 302
