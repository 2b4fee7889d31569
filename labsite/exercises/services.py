"""Write-side logic of exercises: uploads and versions, publishing, the shipped pack,
variants, hints, attempts and their grading, regrading, rosters.

Attempt lifecycle (grading runs on a Celery worker, ``labsite.exercises.tasks``)::

    queued ──claim──▶ grading ──▶ graded      (counted)
       ▲                 ├──────▶ failed      (never counted: timeout, engine error)
       └── reaper ◀──────┘ no result after EXERCISE_GRADING_STALE_SECONDS
                            (worker died): queued again, failed after
                            EXERCISE_GRADE_MAX_TRIES deliveries

A grading is bounded by EXERCISE_GRADE_TIMEOUT_SECONDS (the engine raises GradingTimeout),
so one still ``grading`` well past it lost its worker; the lab's beat process reaps it
(:func:`attempts_reap_stale`). Every transition is a conditional update on the state read,
so a broker's re-delivery and a reaper's re-queue never grade one attempt twice. Only
queued, grading and graded attempts use a question's attempt: a failed one never does.

A double submit counts once: the answer form carries a random ``token`` and an attempt is
unique per (variant, token); the second request gets the first one's attempt.
"""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from labsite.exercises import engine_io
from labsite.exercises.models import (
    Attempt,
    Exercise,
    ExerciseVersion,
    HintReveal,
    StudentVariant,
)
from labsite.exercises.secret import exercise_secret
from labsite.lab.errors import LabInputError, LabLimitError
from labsite.lab.models import STUDENT_GROUP
from labsite.lab.services import role_groups_ensure
from labsite.runs import quota

logger = logging.getLogger(__name__)


class ExerciseActiveLimitError(LabLimitError):
    """Too many ungraded attempts at once (429)."""

    status = 429
    field = "active_attempts"


# ---------------------------------------------------------------------------- upload, publish

@dataclass
class UploadOutcome:
    """What an upload did: ``problems`` (each ``{path, line, message}``; nothing stored when
    there are any), else the ``exercise`` and its new ``version`` (None: same text as the
    newest version, nothing stored) and how many ``variants`` the parameters allow."""

    problems: list[dict[str, Any]] = field(default_factory=list)
    exercise: Exercise | None = None
    version: ExerciseVersion | None = None
    created: bool = False
    variants: int = 0


def exercise_upload(*, user, text: str | bytes) -> UploadOutcome:
    """Check ``text`` with the engine (``load_exercise`` then ``lint_exercise``: every
    problem at its line) and store it: a new exercise, or a new version of the one with
    the file's id. Nothing is stored while there is a problem."""
    from engine.errors import ExerciseError
    from engine.exercises import lint_exercise, load_exercise

    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    limit = settings.EXERCISE_UPLOAD_MAX_BYTES
    if size > limit:
        return UploadOutcome([{"path": "", "line": None,
                               "message": f"expected an exercise file of at most {limit:,} "
                                          f"bytes, got {size:,}"}])
    if not size:
        return UploadOutcome([{"path": "", "line": None, "message": "expected an exercise "
                                                                    "file, got nothing"}])
    try:
        exercise = load_exercise(text, source="upload")
    except ExerciseError as error:
        return UploadOutcome([p.as_dict() for p in error.problems])
    if not _SLUG.fullmatch(exercise.id) or exercise.id in RESERVED_IDS:
        return UploadOutcome([{"path": "id", "line": _line_of_id(text),
                               "message": f"expected an id of letters, digits, - and _ (the "
                                          f"exercise's address; not {', '.join(RESERVED_IDS)}"
                                          f"), got {exercise.id!r}"}])
    result = lint_exercise(exercise, timeout_s=settings.EXERCISE_GRADE_TIMEOUT_SECONDS)
    if result.problems:
        return UploadOutcome([p.as_dict() for p in result.problems])
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    with transaction.atomic():
        stored, created = Exercise.objects.select_for_update().get_or_create(
            slug=exercise.id, defaults={"title": exercise.title, "owner": user})
        newest = stored.versions.order_by("-number").first()
        if newest is not None and newest.text == text:
            return UploadOutcome(exercise=stored, variants=result.variants)
        if stored.title != exercise.title:
            Exercise.objects.filter(pk=stored.pk).update(title=exercise.title)
            stored.title = exercise.title
        version = ExerciseVersion.objects.create(
            exercise=stored, number=(newest.number + 1) if newest else 1, text=text,
            uploaded_by=user)
    return UploadOutcome(exercise=stored, version=version, created=created,
                         variants=result.variants)


#: An exercise's id is its address (/exercises/<id>/): what a URL slug allows, and no
#: word the instructor pages use.
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")
RESERVED_IDS = ("manage",)


def _line_of_id(text: str | bytes) -> int | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return next((n for n, line in enumerate(text.splitlines(), 1)
                 if line.startswith("id:")), None)


def exercise_publish(exercise: Exercise, *, published: bool, due_at: datetime | None,
                     late_policy: str, late_penalty_pct: int, groups) -> Exercise:
    """Set the publication state (LabInputError for a bad policy or penalty)."""
    if late_policy not in Exercise.LatePolicy.values:
        raise LabInputError.one("late_policy", f"expected one of "
                                               f"{', '.join(Exercise.LatePolicy.values)}")
    if not 0 <= late_penalty_pct <= 100:
        raise LabInputError.one("late_penalty_pct", "expected a percentage 0-100")
    exercise.published, exercise.due_at = published, due_at
    exercise.late_policy, exercise.late_penalty_pct = late_policy, late_penalty_pct
    exercise.save(update_fields=["published", "due_at", "late_policy", "late_penalty_pct"])
    exercise.groups.set(groups)
    return exercise


def exercises_pack_load() -> list[Exercise]:
    """Store the engine's shipped pack (``engine/exercises/pack``), published to everyone,
    owned by nobody (the lab). Idempotent: an exercise whose id is stored already is left
    alone (an instructor may have uploaded a new version or unpublished it). A file that
    does not load is logged and skipped: a broken exercise never breaks the others."""
    from engine.errors import ExerciseError
    from engine.exercises import list_pack, load_exercise

    created = []
    for path in list_pack():
        text = path.read_text(encoding="utf-8")
        try:
            exercise = load_exercise(text, source=path.name)
        except ExerciseError as error:
            logger.error("pack exercise %s not loaded: %s", path.name, error)
            continue
        with transaction.atomic():
            stored, was_created = Exercise.objects.get_or_create(
                slug=exercise.id, defaults={"title": exercise.title, "published": True})
            if was_created:
                ExerciseVersion.objects.create(exercise=stored, number=1, text=text)
                created.append(stored)
    return created


# ---------------------------------------------------------------------------- variants, hints

def variant_start(exercise: Exercise, student) -> StudentVariant:
    """The student's live variant, created on first view (their POST "Start") with the
    seed derived from the exercise secret — stored, never derived again."""
    from engine.exercises import variant_seed

    live = StudentVariant.objects.filter(exercise=exercise, student=student,
                                         retired_at__isnull=True).first()
    if live is not None:
        return live
    last = (StudentVariant.objects.filter(exercise=exercise, student=student)
            .order_by("-reset").values_list("reset", flat=True).first())
    reset = 0 if last is None else last + 1
    seed = variant_seed(exercise_secret(), exercise.slug, str(student.pk), reset)
    try:
        with transaction.atomic():
            return StudentVariant.objects.create(exercise=exercise, student=student,
                                                 reset=reset, seed=seed)
    except IntegrityError:  # two first views at once: the other one's row
        return StudentVariant.objects.get(exercise=exercise, student=student,
                                          retired_at__isnull=True)


def variant_reset(exercise: Exercise, student) -> int:
    """Retire the student's live variant (its attempts kept, marked superseded); their
    next view starts a new one with the next reset counter. Returns the attempts marked."""
    with transaction.atomic():
        live = (StudentVariant.objects.select_for_update()
                .filter(exercise=exercise, student=student, retired_at__isnull=True).first())
        if live is None:
            return 0
        StudentVariant.objects.filter(pk=live.pk).update(retired_at=timezone.now())
        return live.attempts.update(superseded=True)


def hint_reveal(variant: StudentVariant, question_id: str, index: int) -> str:
    """Reveal hint ``index`` of a question (hints go in order; revealing one again is a
    no-op) and return its text. LabInputError for an unknown question or hint."""
    from engine.errors import ConfigError
    from engine.exercises import hint_text

    built = engine_io.variant_of(newest_version(variant.exercise), variant.seed)
    try:
        text = hint_text(built, question_id, index)
    except ConfigError as error:
        raise LabInputError.one("hint", str(error)) from None
    shown = HintReveal.objects.filter(variant=variant, question=question_id).count()
    if index > shown:
        raise LabInputError.one("hint", f"reveal hint {shown + 1} first")
    HintReveal.objects.get_or_create(variant=variant, question=question_id, index=index)
    return text


def newest_version(exercise: Exercise) -> ExerciseVersion:
    return exercise.versions.order_by("-number").select_related("exercise").first()


# ---------------------------------------------------------------------------- attempts

def hints_used(variant: StudentVariant) -> dict[str, int]:
    counts: dict[str, int] = {}
    for question in variant.hint_reveals.values_list("question", flat=True):
        counts[question] = counts.get(question, 0) + 1
    return counts


def attempts_used(variant: StudentVariant, *, before: int | None = None) -> dict[str, int]:
    """Per question, the attempts of ``variant`` that answered it and count (queued,
    grading, graded; ``before``: only attempts with a smaller id)."""
    rows = Attempt.objects.filter(variant=variant, status__in=Attempt.COUNTED)
    if before is not None:
        rows = rows.filter(pk__lt=before)
    used: dict[str, int] = {}
    for answers in rows.values_list("answers", flat=True):
        for question in answers:
            used[question] = used.get(question, 0) + 1
    return used


def attempt_submit(*, user, exercise: Exercise, data, token: str) -> Attempt:
    """Store and queue an attempt from a posted answer form (``data``); see the module
    docstring for the token. Refuses (LabInputError) a submit before the exercise was
    started, after a closed due date, with nothing answered, or answering a question
    whose attempts are used up; ExerciseActiveLimitError / RunRateLimitError (429) past the
    fair-use limits. Returns the attempt (the earlier one for a repeated token)."""
    from engine.exercises import student_view

    if not isinstance(token, str) or not 16 <= len(token) <= 64:
        raise LabInputError.one("token", "expected the form's token (reload the page)")
    variant = StudentVariant.objects.filter(exercise=exercise, student=user,
                                            retired_at__isnull=True).first()
    if variant is None:
        raise LabInputError.one("exercise", "start the exercise first")
    earlier = Attempt.objects.filter(variant=variant, token=token).first()
    if earlier is not None:
        return earlier
    now = timezone.now()
    late = exercise.due_at is not None and now > exercise.due_at
    if late and exercise.late_policy == Exercise.LatePolicy.CLOSED:
        raise LabInputError.one("due", f"closed: the due date was "
                                       f"{exercise.due_at:%Y-%m-%d %H:%M} UTC")
    version = newest_version(exercise)
    view = student_view(engine_io.variant_of(version, variant.seed))
    answers = engine_io.answers_from_form(view["questions"], data)
    if not answers:
        raise LabInputError.one("answers", "answer at least one question")
    used = attempts_used(variant)
    for question in view["questions"]:
        if question["id"] in answers and used.get(question["id"], 0) >= question["attempts"]:
            raise LabInputError.one(question["id"], f"all {question['attempts']} attempts at "
                                                    f"{question['id']} are used")
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        active = Attempt.objects.filter(variant__student=user,
                                        status__in=(Attempt.Status.QUEUED,
                                                    Attempt.Status.GRADING)).count()
        if active >= settings.EXERCISE_ACTIVE_MAX:
            raise ExerciseActiveLimitError(
                f"{active} of your attempts are still being graded, the most you may have "
                f"at once ({settings.EXERCISE_ACTIVE_MAX}); wait for one",
                retry_after=5, limit=settings.EXERCISE_ACTIVE_MAX, active=active)
        quota.submit_rate_take(user)  # grading counts toward the lab's request rate
        try:
            with transaction.atomic():
                attempt = Attempt.objects.create(
                    variant=variant, version=version, token=token, answers=answers,
                    hints=hints_used(variant), max_score=view["max_score"], late=late,
                    penalty_pct=exercise.late_penalty_pct
                    if late and exercise.late_policy == Exercise.LatePolicy.PENALTY else 0,
                    celery_task_id=str(uuid.uuid4()))
        except IntegrityError:  # the same token at the same moment: that one counts
            return Attempt.objects.get(variant=variant, token=token)
        transaction.on_commit(lambda: attempt_enqueue(attempt.pk, attempt.celery_task_id))
    return attempt


def attempt_enqueue(attempt_id: int, task_id: str) -> None:
    """Send the grading task; an unreachable broker fails the attempt (not counted)."""
    from labsite.exercises.tasks import grade_attempt

    try:
        grade_attempt.apply_async(args=[attempt_id], task_id=task_id)
    except Exception as error:  # kombu/redis errors after Celery's retries
        logger.warning("attempt %s not queued: %s", attempt_id, error)
        Attempt.objects.filter(pk=attempt_id, status=Attempt.Status.QUEUED).update(
            status=Attempt.Status.FAILED, finished_at=timezone.now(),
            error="the grading queue cannot be reached: not counted, submit again")


def _penalised(result: dict[str, Any], penalty_pct: int) -> dict[str, Any]:
    """The grade with a late penalty taken off every question's points (raw points kept)."""
    factor = 1 - penalty_pct / 100
    for question in result["questions"]:
        question["raw_points"] = question["points"]
        question["points"] = round(question["points"] * factor, 6)
    result["raw_score"] = result["score"]
    result["score"] = round(sum(q["points"] for q in result["questions"]), 6)
    result["penalty_pct"] = penalty_pct
    return result


def grade_with(version: ExerciseVersion, attempt: Attempt) -> dict[str, Any]:
    """The engine's grade of ``attempt``'s answers on ``version`` (penalty applied).
    Raises GradingTimeout and the engine's errors."""
    from engine.exercises import grade

    graded = grade(engine_io.load_version(version), attempt.variant.seed, attempt.answers,
                   hints=attempt.hints, attempts=attempt.numbers,
                   timeout_s=settings.EXERCISE_GRADE_TIMEOUT_SECONDS)
    return _penalised(graded.as_dict(), attempt.penalty_pct)


def attempt_grade(attempt_id: int) -> str | None:
    """Grade one queued attempt (the worker's task). Claims it first, so a second delivery
    does nothing; returns the final status, or None when there was nothing to do."""
    from engine.errors import GradingTimeout, RssLabError

    now = timezone.now()
    if not Attempt.objects.filter(pk=attempt_id, status=Attempt.Status.QUEUED).update(
            status=Attempt.Status.GRADING, started_at=now, tries=F("tries") + 1):
        return None
    attempt = Attempt.objects.select_related("variant", "version__exercise").get(pk=attempt_id)
    # Attempt numbers are counted now, so one that failed before this never used one.
    used = attempts_used(attempt.variant, before=attempt.pk)
    attempt.numbers = {q: used.get(q, 0) + 1 for q in attempt.answers}
    fields: dict[str, Any] = {"numbers": attempt.numbers, "finished_at": timezone.now()}
    try:
        result = grade_with(attempt.version, attempt)
    except GradingTimeout:
        fields.update(status=Attempt.Status.FAILED,
                      error=f"grading took longer than "
                            f"{settings.EXERCISE_GRADE_TIMEOUT_SECONDS:g} s: this attempt is "
                            f"not counted, submit again")
    except RssLabError as error:
        fields.update(status=Attempt.Status.FAILED,
                      error=f"this variant could not be graded (not counted): {error}")
    except Exception:
        logger.exception("attempt %s: grading failed", attempt_id)
        fields.update(status=Attempt.Status.FAILED,
                      error="grading failed inside the lab (not counted); tell your "
                            "instructor")
    else:
        fields.update(status=Attempt.Status.GRADED, grade=result, score=result["score"])
    fields["finished_at"] = timezone.now()
    Attempt.objects.filter(pk=attempt_id, status=Attempt.Status.GRADING,
                           tries=attempt.tries).update(**fields)
    return fields["status"]


def attempts_reap_stale(*, now: datetime | None = None) -> list[int]:
    """Attempts whose worker died mid-grade (``grading`` past
    EXERCISE_GRADING_STALE_SECONDS) are queued again, or failed (not counted) after
    EXERCISE_GRADE_MAX_TRIES deliveries; attempts queued longer than
    RUN_QUEUED_MAX_SECONDS fail. Returns their ids. Run by the beat process."""
    now = now or timezone.now()
    reaped = []
    stale = Attempt.objects.filter(
        status=Attempt.Status.GRADING,
        started_at__lt=now - timedelta(seconds=settings.EXERCISE_GRADING_STALE_SECONDS))
    for attempt in stale:
        retry = attempt.tries < settings.EXERCISE_GRADE_MAX_TRIES
        fields: dict[str, Any] = (
            {"status": Attempt.Status.QUEUED, "celery_task_id": str(uuid.uuid4()),
             "error": "worker lost while grading; queued again"} if retry else
            {"status": Attempt.Status.FAILED, "finished_at": now,
             "error": f"worker lost while grading ({attempt.tries} tries): this attempt is "
                      f"not counted, submit again"})
        with transaction.atomic():
            updated = Attempt.objects.filter(pk=attempt.pk, status=Attempt.Status.GRADING,
                                             tries=attempt.tries).update(**fields)
            if updated and retry:
                transaction.on_commit(lambda a=attempt.pk, t=fields["celery_task_id"]:
                                      attempt_enqueue(a, t))
        if updated:
            reaped.append(attempt.pk)
            logger.warning("attempt %s: %s", attempt.pk, fields["error"])
    never = Attempt.objects.filter(
        status=Attempt.Status.QUEUED,
        created_at__lt=now - timedelta(seconds=settings.RUN_QUEUED_MAX_SECONDS))
    for pk in list(never.values_list("pk", flat=True)):
        if Attempt.objects.filter(pk=pk, status=Attempt.Status.QUEUED).update(
                status=Attempt.Status.FAILED, finished_at=now,
                error="no worker took this attempt: not counted, submit again"):
            reaped.append(pk)
    return reaped


def exercise_regrade(exercise: Exercise) -> dict[str, int]:
    """Grade every graded attempt of ``exercise`` again on its newest version (the same
    answers, hints and attempt numbers); an attempt the newest version cannot grade keeps
    its grade. Returns ``{"regraded": n, "kept": m}``."""
    from engine.errors import GradingTimeout, RssLabError

    version = newest_version(exercise)
    done = {"regraded": 0, "kept": 0}
    attempts = (Attempt.objects.filter(variant__exercise=exercise,
                                       status=Attempt.Status.GRADED)
                .select_related("variant", "version"))
    for attempt in attempts:
        try:
            result = grade_with(version, attempt)
        except (GradingTimeout, RssLabError) as error:
            logger.warning("attempt %s not regraded: %s", attempt.pk, error)
            done["kept"] += 1
            continue
        Attempt.objects.filter(pk=attempt.pk).update(
            version=version, grade=result, score=result["score"],
            max_score=result["max_score"], regraded_at=timezone.now())
        done["regraded"] += 1
    return done


def exercise_regrade_queue(exercise: Exercise) -> None:
    """Queue :func:`exercise_regrade` on a worker."""
    from labsite.exercises.tasks import regrade_exercise

    transaction.on_commit(lambda: regrade_exercise.delay(exercise.pk))


# ---------------------------------------------------------------------------- students

@dataclass(frozen=True)
class RosterLine:
    username: str
    password: str  # "" when the user existed (their password unchanged)
    group: str
    created: bool


def roster_import(text: str) -> list[RosterLine]:
    """Add students from a CSV roster: ``username[,password[,group]]`` per line (a header
    line starting with ``username`` is skipped). New users get the given password or a
    generated one (returned, to be shown once); existing users keep theirs. Everyone is
    put in the student group and in ``group`` (created if needed). LabInputError names the
    first bad line; nothing is stored then."""
    import csv

    rows = []
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or (number == 1 and cells[0].lower() == "username"):
            continue
        username = cells[0]
        if not username or len(username) > 150 or not all(
                c.isalnum() or c in "@.+-_" for c in username):
            raise LabInputError.one("roster", f"line {number}: expected a username (letters, "
                                              f"digits, @ . + - _), got {username[:40]!r}",
                                    line=number)
        rows.append((username, cells[1] if len(cells) > 1 else "",
                     cells[2] if len(cells) > 2 else ""))
    if not rows:
        raise LabInputError.one("roster", "expected at least one line: username,password,group")
    user_model = get_user_model()
    students = role_groups_ensure()[STUDENT_GROUP]
    done = []
    with transaction.atomic():
        for username, password, group_name in rows:
            user = user_model.objects.filter(username=username).first()
            created = user is None
            if created:
                password = password or secrets.token_urlsafe(9)
                user = user_model.objects.create_user(username=username, password=password)
            user.groups.add(students)
            if group_name:
                user.groups.add(Group.objects.get_or_create(name=group_name[:150])[0])
            done.append(RosterLine(username, password if created else "", group_name, created))
    return done


def student_password_reset(student) -> str:
    """Give ``student`` a new random password and return it (shown once, never stored in
    clear). Staff accounts are refused: an instructor resets students only."""
    if student.is_staff or student.is_superuser:
        raise LabInputError.one("student", "only a student's password can be reset here")
    password = secrets.token_urlsafe(9)
    student.set_password(password)
    student.save(update_fields=["password"])
    return password
