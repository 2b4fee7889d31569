"""The exercises' rows in the admin (read mostly; the pages are the instructor's tools)."""

from django.contrib import admin

from labsite.exercises.models import Attempt, Exercise, ExerciseVersion, StudentVariant

admin.site.register(Exercise)
admin.site.register(ExerciseVersion)
admin.site.register(StudentVariant)
admin.site.register(Attempt)
