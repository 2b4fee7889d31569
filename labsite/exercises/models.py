"""Exercises, their versions, who may see them, each student's variant and attempts.

- :class:`Exercise` — one exercise (its ``slug`` is the file's ``id``) with its publication
  state: published or not, a due date, a late policy and the groups (sections) it is
  visible to (none: every student).
- :class:`ExerciseVersion` — the text of each upload; students always get the newest, an
  attempt keeps the version it was graded on.
- :class:`StudentVariant` — a student's variant: the seed computed from the exercise
  secret when the student starts the exercise, stored and never derived again (a rotated
  secret changes nobody's variant). Resetting retires the row (``retired_at``) and makes a
  new one with the next ``reset``; the old attempts stay, marked ``superseded``.
- :class:`Attempt` — one submission: answers, the hints and attempt numbers it was graded
  with, its grade (the engine's ``Grade.as_dict()``), status and an idempotency ``token``
  (a double submit of one form counts once).
- :class:`HintReveal` — a hint a student asked to see (its cost comes off that question).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q


class Exercise(models.Model):
    class LatePolicy(models.TextChoices):
        ACCEPT = "accept", "accepted, no penalty"
        PENALTY = "penalty", "accepted with a penalty"
        CLOSED = "closed", "closed: no submissions after the due date"

    slug = models.SlugField(max_length=64, unique=True, help_text="The exercise file's id.")
    title = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="exercises",
                              help_text="Empty: the lab's shipped pack.")
    created_at = models.DateTimeField(auto_now_add=True)

    published = models.BooleanField(default=False)
    due_at = models.DateTimeField(null=True, blank=True)
    late_policy = models.CharField(max_length=10, choices=LatePolicy.choices,
                                   default=LatePolicy.ACCEPT)
    late_penalty_pct = models.PositiveSmallIntegerField(
        default=0, help_text="Percent taken off a late attempt's score (policy penalty).")
    groups = models.ManyToManyField(Group, blank=True, related_name="exercises",
                                    help_text="Sections that see it; none: every student.")

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.title


class ExerciseVersion(models.Model):
    exercise = models.ForeignKey(Exercise, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    text = models.TextField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["exercise", "-number"]
        constraints = [models.UniqueConstraint(fields=["exercise", "number"],
                                               name="exercise_version_unique_number")]

    def __str__(self) -> str:
        return f"{self.exercise.slug} v{self.number}"


class StudentVariant(models.Model):
    exercise = models.ForeignKey(Exercise, on_delete=models.CASCADE, related_name="variants")
    student = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="exercise_variants")
    reset = models.PositiveIntegerField(default=0)
    # 63 bits (engine.exercises.variant.MAX_SEED): fits a signed 64-bit column.
    seed = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, help_text="First view (start).")
    retired_at = models.DateTimeField(null=True, blank=True,
                                      help_text="When an instructor reset it.")

    class Meta:
        ordering = ["exercise", "student", "-reset"]
        constraints = [
            models.UniqueConstraint(fields=["exercise", "student", "reset"],
                                    name="variant_unique_reset"),
            # One live variant per student and exercise, whatever races.
            models.UniqueConstraint(fields=["exercise", "student"],
                                    condition=Q(retired_at__isnull=True),
                                    name="variant_one_live"),
        ]

    def __str__(self) -> str:
        return f"{self.exercise.slug} for {self.student_id} (reset {self.reset})"


class Attempt(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        GRADING = "grading", "grading"
        GRADED = "graded", "graded"
        # Not graded (timeout, worker lost twice, broker down): never counted.
        FAILED = "failed", "failed"

    #: Statuses that use a question's attempt (queued and grading are held, so two quick
    #: submits cannot both take the last attempt).
    COUNTED = (Status.QUEUED, Status.GRADING, Status.GRADED)
    FINISHED = (Status.GRADED, Status.FAILED)

    variant = models.ForeignKey(StudentVariant, on_delete=models.CASCADE,
                                related_name="attempts")
    version = models.ForeignKey(ExerciseVersion, on_delete=models.PROTECT,
                                related_name="attempts")
    token = models.CharField(max_length=64, help_text="The form's idempotency token.")
    answers = models.JSONField(default=dict)
    hints = models.JSONField(default=dict, help_text="Hints revealed per question.")
    numbers = models.JSONField(default=dict, help_text="Which attempt each answer was.")
    grade = models.JSONField(null=True, blank=True)
    score = models.FloatField(null=True, blank=True)
    max_score = models.FloatField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED,
                              db_index=True)
    error = models.TextField(blank=True)
    late = models.BooleanField(default=False)
    penalty_pct = models.PositiveSmallIntegerField(default=0)
    superseded = models.BooleanField(default=False, help_text="Its variant was reset.")
    tries = models.PositiveSmallIntegerField(default=0, help_text="Worker deliveries.")
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    regraded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["variant", "token"],
                                               name="attempt_unique_token")]

    def __str__(self) -> str:
        return f"attempt {self.pk} ({self.status})"


class HintReveal(models.Model):
    variant = models.ForeignKey(StudentVariant, on_delete=models.CASCADE,
                                related_name="hint_reveals")
    question = models.CharField(max_length=64)
    index = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["variant", "question", "index"]
        constraints = [models.UniqueConstraint(fields=["variant", "question", "index"],
                                               name="hint_unique_reveal")]
