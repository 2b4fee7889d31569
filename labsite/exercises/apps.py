from django.apps import AppConfig


class ExercisesConfig(AppConfig):
    name = "labsite.exercises"
    label = "exercises"
    verbose_name = "Exercises"
