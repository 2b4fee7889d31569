from django.apps import AppConfig


class LabConfig(AppConfig):
    name = "labsite.lab"
    label = "lab"
    verbose_name = "Lab"
