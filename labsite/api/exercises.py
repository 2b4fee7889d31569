"""The REST API's exercises: thin wrappers over ``labsite.exercises`` (its selectors decide
who sees what, its services start variants, reveal hints and submit attempts), so the API
and the exercise pages share every rule — visibility, attempt limits, late policies, fair
use, and "a double submit counts once".

What the API adds is only shape:

- a student's variant as JSON: the engine's ``student_view`` (prompt, questions, each
  question's allowed ``answer_fields``, hints with their cost and only revealed texts)
  without the variant's ``seed`` — the pack's files are public, so a seed would be a
  solution one ``python -m engine exercise solve`` away (instructors see seeds, as in the
  gradebook);
- answers as JSON, ``{"answers": {question: {field: value}}}``, turned into the fields the
  page's form posts (:func:`answers_as_form`), so ``attempt_submit`` reads both alike;
- ``Idempotency-Key`` as the attempt's token: a retried POST (even one racing the first)
  is the same attempt.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from labsite.exercises import engine_io, selectors
from labsite.exercises import services as exercise_services
from labsite.exercises.models import Attempt, Exercise, StudentVariant
from labsite.lab.errors import LabInputError, LabNotFound
from labsite.lab.selectors import user_is_instructor

#: Question fields of the page's context that are HTML widgets, not the engine's view.
_PAGE_ONLY = ("inputs", "next_hint", "givens")


def exercise_visible(*, user, slug: str) -> Exercise:
    return selectors.exercise_get_for_user(user, slug)


def _status(variant: StudentVariant | None, score: float | None) -> str:
    # The list page's words (selectors.student_exercise_rows).
    if variant is None:
        return "not started"
    return "started" if score is None else "graded"


def _max_score(exercise: Exercise) -> float | None:
    """The newest version's maximum score; None for one the engine cannot load (a broken
    exercise never breaks the list)."""
    from engine.errors import RssLabError

    version = selectors.newest_version(exercise)
    if version is None:
        return None
    try:
        return float(engine_io.load_version(version).max_score)
    except RssLabError:
        return None


def exercise_summary(exercise: Exercise, *, user, variant=None, score=None,
                     status: str | None = None) -> dict[str, Any]:
    """One exercise as the list shows it: publication, due date and the user's status and
    score."""
    if status is None:
        variant = selectors.live_variant(exercise, user)
        score = selectors.variant_score(variant)
        status = _status(variant, score)
    return {"slug": exercise.slug, "title": exercise.title, "published": exercise.published,
            "due_at": exercise.due_at, "late_policy": exercise.late_policy,
            "late_penalty_pct": exercise.late_penalty_pct, "status": status,
            "score": score, "max_score": _max_score(exercise)}


def exercise_list(*, user) -> list[dict[str, Any]]:
    """The exercises ``user`` may open (a student: the published ones of their groups)."""
    return [exercise_summary(row["exercise"], user=user, score=row["score"],
                             status=row["status"])
            for row in selectors.student_exercise_rows(user)]


def variant_view(exercise: Exercise, variant: StudentVariant, *, user) -> dict[str, Any]:
    """The student's own variant: the engine's student view (no solution, hint texts only
    once revealed), each question's attempts left; the seed for instructors only."""
    page = selectors.variant_page(exercise, variant.seed, variant=variant)
    view = dict(page["view"])
    questions = [{key: value for key, value in question.items() if key not in _PAGE_ONLY}
                 for question in page["questions"]]
    if not user_is_instructor(user):
        view.pop("seed", None)
    version = selectors.newest_version(exercise)
    return {**view, "prompt_html": page["prompt_html"], "questions": questions,
            "version": version.number, "reset": variant.reset,
            "started_at": variant.created_at}


def exercise_detail(exercise: Exercise, *, user) -> dict[str, Any]:
    """An exercise and the user's variant (null before they start it: a GET never
    starts one)."""
    variant = selectors.live_variant(exercise, user)
    score = selectors.variant_score(variant)
    return {**exercise_summary(exercise, user=user, variant=variant, score=score,
                               status=_status(variant, score)),
            "variant": None if variant is None else variant_view(exercise, variant,
                                                                 user=user)}


def exercise_start(*, user, slug: str) -> Exercise:
    """Start the user's variant (the page's "Start"); starting again changes nothing."""
    exercise = exercise_visible(user=user, slug=slug)
    exercise_services.variant_start(exercise, user)
    return exercise


def _live_variant(exercise: Exercise, user) -> StudentVariant:
    variant = selectors.live_variant(exercise, user)
    if variant is None:
        raise LabInputError.one("exercise", "start the exercise first (POST …/start)",
                                code="not_started")
    return variant


def _form_value(spec: dict[str, Any], value: Any, field: str):
    """One answer as the page's input ``spec`` posts it."""
    if isinstance(value, dict):
        raise LabInputError.one(field, "expected a value or a list of values")
    if spec["widget"] == "select":
        return json.dumps(value)  # the select's option values are JSON (engine_io)
    if isinstance(value, list):
        if any(isinstance(item, dict | list) for item in value):
            raise LabInputError.one(field, "expected a list of plain values")
        items = [str(item) for item in value]
        return items if spec["widget"] == "checkbox" else ",".join(items)
    return "" if value is None else str(value)


def answers_as_form(questions: list[dict[str, Any]], answers: dict) -> dict[str, Any]:
    """``{question: {field: value}}`` as the answer form's fields (``q-<question>-<field>``),
    for ``attempt_submit``. A question or field the variant does not ask for is a 400
    naming it (``answers.steer.port``), listing what is allowed."""
    by_id = {question["id"]: question for question in questions}
    form: dict[str, Any] = {}
    errors = []
    for qid, fields in answers.items():
        question = by_id.get(qid)
        if question is None:
            errors.append(LabInputError.one(f"answers.{qid}", f"no question {qid!r}; "
                                            f"expected one of {', '.join(by_id)}"))
            continue
        if not isinstance(fields, dict):
            errors.append(LabInputError.one(f"answers.{qid}", "expected an object of "
                                                              "answer fields"))
            continue
        specs = {spec["field"]: spec for spec in engine_io.question_inputs(question)}
        for name, value in fields.items():
            where = f"answers.{qid}.{name}"
            if name not in specs:
                errors.append(LabInputError.one(where, f"not an answer field of {qid}; "
                                                       f"expected {', '.join(specs)}"))
                continue
            try:
                form[specs[name]["name"]] = _form_value(specs[name], value, where)
            except LabInputError as error:
                errors.append(error)
    if errors:
        raise LabInputError([entry for error in errors for entry in error.errors])
    return form


def attempt_token(idempotency_key: str) -> str:
    """The attempt's token (``Attempt.token``, unique per variant): from the request's
    ``Idempotency-Key`` when it has one, so a retry is the same attempt even when it races
    the first request; otherwise a fresh one (every POST is a new attempt)."""
    if idempotency_key:
        return hashlib.sha256(f"api:{idempotency_key}".encode()).hexdigest()[:48]
    return secrets.token_urlsafe(24)


def attempt_submit(*, user, slug: str, answers: dict, idempotency_key: str = "") -> Attempt:
    """Submit ``answers`` through the page's own service (``attempt_submit``): the same
    checks, limits and fair use, and grading queued on a worker."""
    from engine.exercises import student_view

    exercise = exercise_visible(user=user, slug=slug)
    variant = _live_variant(exercise, user)
    version = selectors.newest_version(exercise)
    view = student_view(engine_io.variant_of(version, variant.seed))
    form = answers_as_form(view["questions"], answers)
    return exercise_services.attempt_submit(user=user, exercise=exercise, data=form,
                                            token=attempt_token(idempotency_key))


def attempts_of(*, user, slug: str):
    """The user's own attempts at ``slug`` (every reset of their variant), newest first."""
    exercise = exercise_visible(user=user, slug=slug)
    return (Attempt.objects.filter(variant__exercise=exercise, variant__student=user)
            .select_related("version", "variant__student").order_by("-created_at", "-pk"))


def attempt_visible(*, user, slug: str, attempt_id: int) -> Attempt:
    """One attempt: the student's own; an instructor, any student's."""
    exercise = exercise_visible(user=user, slug=slug)
    if not user_is_instructor(user):
        return selectors.attempt_get_for_user(user, exercise, attempt_id)
    attempt = (Attempt.objects.filter(pk=attempt_id, variant__exercise=exercise)
               .select_related("version", "variant__student").first())
    if attempt is None:
        raise LabNotFound("attempt", f"no attempt {attempt_id}")
    return attempt


def attempt_data(attempt: Attempt) -> dict[str, Any]:
    """An attempt's status and grade (the page's JSON), its variant's total so far and
    whose it is."""
    return {**selectors.attempt_payload(attempt),
            "total": selectors.variant_score(attempt.variant),
            "student": attempt.variant.student.username}


def hint_reveal(*, user, slug: str, question: str, index: int) -> dict[str, Any]:
    """Reveal hint ``index`` of ``question`` (in order; again is a no-op) through the page's
    service; its ``cost`` comes off that question's points."""
    exercise = exercise_visible(user=user, slug=slug)
    variant = _live_variant(exercise, user)
    page = selectors.variant_page(exercise, variant.seed, variant=variant)
    found = next((q for q in page["questions"] if q["id"] == question), None)
    if found is None:
        raise LabInputError.one("question", f"no question {question!r}; expected one of "
                                            f"{', '.join(q['id'] for q in page['questions'])}")
    if not 0 <= index < len(found["hints"]):
        raise LabInputError.one("index", f"question {question} has {len(found['hints'])} "
                                         f"hints (index 0-{len(found['hints']) - 1})"
                                if found["hints"] else f"question {question} has no hints")
    text = exercise_services.hint_reveal(variant, question, index)
    return {"question": question, "index": index, "number": index + 1,
            "cost": found["hints"][index]["cost"], "text": text,
            "points": found["points"]}


def gradebook(*, user, slug: str) -> dict[str, Any]:
    """The gradebook as the instructor's page shows it (404 for anyone else)."""
    exercise = selectors.exercise_get_for_instructor(user, slug)
    book = selectors.gradebook(exercise)
    return {"exercise": exercise.slug, "title": exercise.title, "version": book["version"],
            "max_score": book["max_score"],
            "questions": [{"id": qid, "points": points} for qid, points in book["questions"]],
            "success": book["success"], "scores": book["scores"],
            "rows": [{"username": row.student.username, "user_id": row.student.pk,
                      "seed": row.variant.seed, "reset": row.variant.reset,
                      "best_score": row.best, "attempts": row.attempts,
                      "last_submission": row.last, "seconds_first_view_to_last": row.seconds,
                      "version": row.version, "per_question": row.per_question}
                     for row in book["rows"]]}


def gradebook_csv(*, user, slug: str) -> tuple[str, str]:
    """The page's CSV (same columns, seed and formula escaping) and its file name."""
    exercise = selectors.exercise_get_for_instructor(user, slug)
    return selectors.gradebook_csv(exercise), f"{exercise.slug}-gradebook.csv"
