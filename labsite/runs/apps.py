from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "labsite.runs"
    label = "runs"
    verbose_name = "Runs"
