"""Celery tasks for exercises: thin wrappers over ``services``.

``exercises.grade_attempt`` grades one attempt on a worker (late acknowledgement: a worker
that dies leaves the message to the broker, and the beat process's
``exercises.reap_stale`` queues the attempt again; the claim in the service lets only one
delivery grade it). ``exercises.regrade`` regrades an exercise's attempts on its newest
version. ``exercises.reap_stale`` runs inside the beat process (``run_in_beat``).
"""

from __future__ import annotations

from celery import shared_task
from django.db import close_old_connections

from labsite.exercises.models import Exercise
from labsite.exercises.services import attempt_grade, attempts_reap_stale, exercise_regrade


@shared_task(name="exercises.grade_attempt", acks_late=True, reject_on_worker_lost=True)
def grade_attempt(attempt_id: int) -> str | None:
    return attempt_grade(int(attempt_id))


@shared_task(name="exercises.regrade", acks_late=True)
def regrade_exercise(exercise_id: int) -> dict | None:
    exercise = Exercise.objects.filter(pk=exercise_id).first()
    return exercise_regrade(exercise) if exercise else None


@shared_task(name="exercises.reap_stale", ignore_result=True)
def reap_stale() -> list[int]:
    close_old_connections()  # the long-lived beat process: drop a closed connection
    try:
        return attempts_reap_stale()
    finally:
        close_old_connections()
