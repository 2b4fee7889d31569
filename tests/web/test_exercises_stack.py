"""Exercises on the real stack without a browser: the lab's beat process stores the shipped
pack as it starts (after the examples), published, and a second start stores nothing."""

from __future__ import annotations

import pytest

from labsite.exercises.models import Exercise, ExerciseVersion
from tests.web.helpers import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]


def test_beat_stores_the_pack_once_published(beat):
    wait_for(lambda: Exercise.objects.count() == 10, timeout=30,
             what="beat to store the ten shipped exercises")
    assert set(Exercise.objects.values_list("published", flat=True)) == {True}
    assert ExerciseVersion.objects.count() == 10
    assert Exercise.objects.filter(slug="rss-basics", owner__isnull=True).exists()
    assert "exercises_pack_load stored 10 rows" in beat.log()
