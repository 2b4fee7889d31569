"""Read-side logic of exercises: who sees what, a student's page, attempts as JSON, the
gradebook and its CSV. Nothing here writes.

What a student may see is decided here and only here: their own live variant (never a
seed of someone else's), the engine's ``student_view`` of it (no solution, no hint text
until revealed), and their own attempts' grades (the engine reveals its own values only
for a right answer or on the last attempt). Instructors see everything.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q
from django.urls import reverse

from labsite.exercises import engine_io
from labsite.exercises.models import Attempt, Exercise, HintReveal, StudentVariant
from labsite.exercises.rendering import render_markdown
from labsite.lab.errors import LabNotFound
from labsite.lab.selectors import user_is_instructor


def exercise_visible_list(user):
    """Exercises ``user`` may open: every one for an instructor; the published ones of
    their groups (or of no group: everyone's) for a student."""
    rows = Exercise.objects.order_by("slug")
    if user_is_instructor(user):
        return rows
    return (rows.filter(published=True)
            .filter(Q(groups__isnull=True) | Q(groups__in=user.groups.all())).distinct())


def exercise_get_for_user(user, slug: str) -> Exercise:
    """The exercise ``slug`` if ``user`` may open it; LabNotFound (404) otherwise, the
    same answer whether it does not exist or is hidden."""
    exercise = exercise_visible_list(user).filter(slug=slug).first()
    if exercise is None:
        raise LabNotFound("exercise", f"no exercise {slug!r}, or not yours")
    return exercise


def exercise_get_for_instructor(user, slug: str) -> Exercise:
    if not user_is_instructor(user):
        raise LabNotFound("exercise", f"no exercise {slug!r}, or not yours")
    return exercise_get_for_user(user, slug)


def live_variant(exercise: Exercise, student) -> StudentVariant | None:
    return StudentVariant.objects.filter(exercise=exercise, student=student,
                                         retired_at__isnull=True).first()


def newest_version(exercise: Exercise):
    return exercise.versions.order_by("-number").select_related("exercise").first()


def best_points(attempts) -> dict[str, float]:
    """Per question, the best points over graded attempts (penalties applied): a student
    may answer questions in separate submissions."""
    best: dict[str, float] = {}
    for attempt in attempts:
        if attempt.status != Attempt.Status.GRADED or not attempt.grade:
            continue
        for question in attempt.grade.get("questions", []):
            best[question["id"]] = max(best.get(question["id"], 0.0), question["points"])
    return best


def variant_score(variant: StudentVariant | None) -> float | None:
    """The variant's score (sum of per-question bests), None before any graded attempt."""
    if variant is None:
        return None
    attempts = list(variant.attempts.filter(status=Attempt.Status.GRADED))
    return round(sum(best_points(attempts).values()), 6) if attempts else None


def student_exercise_rows(user) -> list[dict[str, Any]]:
    """The exercise list: each visible exercise with the user's status and score."""
    rows = []
    for exercise in exercise_visible_list(user):
        variant = live_variant(exercise, user)
        score = variant_score(variant)
        if variant is None:
            status = "not started"
        elif score is None:
            status = "started"
        else:
            status = "graded"
        rows.append({"exercise": exercise, "status": status, "score": score})
    return rows


def variant_page(exercise: Exercise, seed: int, *, variant: StudentVariant | None = None,
                 preview: bool = False) -> dict[str, Any]:
    """What the exercise page shows of variant ``seed``: the engine's ``student_view``
    with the prompt rendered, each question's inputs, attempts left, hints (revealed ones
    with their text) — for ``variant``'s student, or an instructor's ``preview``."""
    from engine.exercises import hint_text, student_view

    built = engine_io.variant_of(newest_version(exercise), seed)
    view = student_view(built)
    revealed = {}
    used: dict[str, int] = {}
    if variant is not None:
        for reveal in HintReveal.objects.filter(variant=variant):
            revealed.setdefault(reveal.question, []).append(reveal.index)
        for answers in (Attempt.objects.filter(variant=variant, status__in=Attempt.COUNTED)
                        .values_list("answers", flat=True)):
            for question in answers:
                used[question] = used.get(question, 0) + 1
    questions = []
    for question in view["questions"]:
        shown = sorted(revealed.get(question["id"], []))
        hints = [{"index": h["index"], "number": h["index"] + 1, "cost": h["cost"],
                  "text": hint_text(built, question["id"], h["index"])
                  if h["index"] in shown else None} for h in question["hints"]]
        left = max(question["attempts"] - used.get(question["id"], 0), 0)
        questions.append({**question, "prompt_html": render_markdown(question["prompt"]),
                          "inputs": engine_io.question_inputs(question), "hints": hints,
                          "next_hint": next((h for h in hints if h["text"] is None), None),
                          "attempts_left": left, "givens": _givens_text(question)})
    return {"view": view, "prompt_html": render_markdown(view["prompt"]),
            "questions": questions, "preview": preview, "seed": seed}


def _givens_text(question: dict[str, Any]) -> list[str]:
    """A question's givens (the packet, the flow, the target core…) as short lines."""
    lines = []
    packet = question.get("packet")
    if packet and packet.get("src"):
        ports = (f"{packet['src']}:{packet['sport']} → {packet['dst']}:{packet['dport']}"
                 if packet.get("sport") is not None else f"{packet['src']} → {packet['dst']}")
        lines.append(f"packet: {ports} {packet.get('proto', 'tcp')} ({packet.get('direction')})")
    if question.get("flow"):
        lines.append(f"flow {question['flow']['index']}: {question['flow']['request']}")
    if question.get("target_core") is not None:
        lines.append(f"target core: {question['target_core']}")
    if question.get("taken"):
        lines.append("ports taken: " + ", ".join(f"{a}–{b}" for a, b in question["taken"]))
    if question.get("checks"):
        lines.append("checks: " + ", ".join(f"{k} {v}" for k, v in question["checks"].items()))
    if question.get("failed_cores"):
        lines.append(f"failed cores: {', '.join(map(str, question['failed_cores']))}")
    if question.get("buckets"):
        lines.append(f"buckets: {question['buckets']}")
    return lines


def variant_scenario_yaml(exercise: Exercise, seed: int) -> str:
    """The variant's scenario file, for the lab's YAML tab (the student view's scenario:
    no answer in it)."""
    import yaml

    from engine.exercises import student_view

    scenario = student_view(engine_io.variant_of(newest_version(exercise), seed))["scenario"]
    return yaml.safe_dump(scenario, sort_keys=False, default_flow_style=None, width=100)


def attempt_get_for_user(user, exercise: Exercise, attempt_id: int) -> Attempt:
    """One of the user's own attempts at ``exercise`` (any reset); LabNotFound otherwise."""
    attempt = (Attempt.objects.filter(pk=attempt_id, variant__exercise=exercise,
                                      variant__student=user)
               .select_related("version").first())
    if attempt is None:
        raise LabNotFound("attempt", f"no attempt {attempt_id}, or not yours")
    return attempt


def attempt_payload(attempt: Attempt) -> dict[str, Any]:
    """An attempt as its student (or an instructor) reads it: status, score and the
    engine's per-question feedback (packets with hash, bucket, core and hash input, each
    with a link to the lab's bit-by-bit page for that input)."""
    return {"attempt": attempt.pk, "status": attempt.status, "error": attempt.error,
            "score": attempt.score, "max_score": attempt.max_score,
            "version": attempt.version.number, "late": attempt.late,
            "penalty_pct": attempt.penalty_pct, "superseded": attempt.superseded,
            "created_at": attempt.created_at.isoformat(),
            "questions": with_explain_links(attempt),
            "finished": attempt.status in Attempt.FINISHED}


def with_explain_links(attempt: Attempt) -> list[dict[str, Any]]:
    """The grade's questions, each packet that was hashed given ``explain_url``: the lab's
    bit-by-bit page for its input under the variant's key and table."""
    questions = (attempt.grade or {}).get("questions", [])
    if not any(p.get("input_hex") for q in questions for p in q.get("packets") or []):
        return questions
    params = engine_io.explain_params(attempt.version, attempt.variant.seed)
    base = reverse("lab:explain")
    return [{**q, "packets": [
        {**p, "explain_url": f"{base}?{urlencode({**params, 'input_hex': p['input_hex']})}"}
        if p.get("input_hex") and p.get("hash") is not None else p
        for p in q.get("packets") or []]} for q in questions]


def attempt_history(variant: StudentVariant | None) -> list[Attempt]:
    if variant is None:
        return []
    return list(variant.attempts.select_related("version").order_by("-created_at", "-pk"))


# ---------------------------------------------------------------------------- gradebook

@dataclass
class GradebookRow:
    student: Any
    variant: StudentVariant
    best: float | None
    attempts: int
    last: Any
    seconds: float | None
    version: int | None
    per_question: dict[str, float]


def gradebook(exercise: Exercise) -> dict[str, Any]:
    """One row per student with a live variant: best score, graded attempts, last
    submission, seconds from first view to last submission, version of the last graded
    attempt, per-question bests; plus the scores (histogram) and each question's success
    rate (students with full marks on it / students who answered it)."""
    version = newest_version(exercise)
    engine_exercise = engine_io.load_version(version)
    questions = [(q.id, float(q.points)) for q in engine_exercise.questions]
    rows = []
    variants = (StudentVariant.objects.filter(exercise=exercise, retired_at__isnull=True)
                .select_related("student").order_by("student__username"))
    for variant in variants:
        attempts = [a for a in variant.attempts.select_related("version")
                    if a.status != Attempt.Status.FAILED]
        graded = [a for a in attempts if a.status == Attempt.Status.GRADED]
        best = best_points(graded)
        last = max((a.created_at for a in attempts), default=None)
        last_graded = max(graded, key=lambda a: a.created_at, default=None)
        rows.append(GradebookRow(
            variant.student, variant, round(sum(best.values()), 6) if graded else None,
            len(graded), last,
            (last - variant.created_at).total_seconds() if last else None,
            last_graded.version.number if last_graded else None, best))
    success = []
    for qid, points in questions:
        answered = [r for r in rows if qid in r.per_question]
        full = [r for r in answered if r.per_question[qid] >= points - 1e-9]
        success.append({"id": qid, "points": points, "answered": len(answered),
                        "full": len(full),
                        "rate": len(full) / len(answered) if answered else None})
    return {"rows": rows, "questions": questions, "success": success,
            "max_score": engine_exercise.max_score, "version": version.number,
            "scores": [r.best for r in rows if r.best is not None]}


#: A CSV cell starting with one of these is a formula to a spreadsheet.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """``value`` as a CSV cell a spreadsheet will not run: a leading apostrophe before
    ``=``, ``+``, ``-``, ``@`` (and tab, carriage return)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def gradebook_csv(exercise: Exercise) -> str:
    """The gradebook as CSV; ``seed`` reproduces the variant with ``python -m engine
    exercise variant FILE --seed SEED``."""
    book = gradebook(exercise)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["username", "seed", "reset", "best_score", "max_score", "attempts",
                     "last_submission", "seconds_first_view_to_last", "version",
                     *[f"{qid} ({points:g})" for qid, points in book["questions"]]])
    for row in book["rows"]:
        writer.writerow([csv_cell(v) for v in (
            row.student.username, row.variant.seed, row.variant.reset,
            "" if row.best is None else f"{row.best:g}", f"{book['max_score']:g}",
            row.attempts, row.last.isoformat() if row.last else "",
            "" if row.seconds is None else round(row.seconds),
            "" if row.version is None else row.version,
            *["" if qid not in row.per_question else f"{row.per_question[qid]:g}"
              for qid, _ in book["questions"]])])
    return out.getvalue()


def student_attempts(exercise: Exercise, student) -> dict[str, Any]:
    """One student's variants (live and reset) and every attempt, for the instructor."""
    variants = list(StudentVariant.objects.filter(exercise=exercise, student=student)
                    .order_by("-reset"))
    return {"variants": [{"variant": v, "attempts": attempt_history(v),
                          "score": variant_score(v)} for v in variants]}
