"""The REST API's Django app."""

from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "labsite.api"
    label = "api"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "REST API"

    def ready(self):
        from labsite.api import schema  # noqa: F401 (registers the token scheme)
