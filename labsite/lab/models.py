"""Stored scenarios: the text an instructor writes (YAML or JSON) plus who owns it."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse

STUDENT_GROUP = "student"
INSTRUCTOR_GROUP = "instructor"


def validate_scenario_text(body: str) -> None:
    """Reject text that is not YAML (JSON is YAML) before it is stored.

    Only the syntax and the nesting are checked here (bounded before the parser recurses,
    so the admin cannot be crashed by ``[[[[…``); what the fields mean is the engine's
    business and is reported when a run starts.
    """
    from engine.errors import DocumentError
    from engine.safeparse import check_yaml_syntax

    try:
        check_yaml_syntax(body, field="body")
    except DocumentError as error:
        where = f" [line {error.line}]" if error.line else ""
        raise ValidationError(f"body: {error.problem}{where}") from None


class Scenario(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    body = models.TextField(
        validators=[validate_scenario_text],
        help_text="The scenario as YAML or JSON, as the engine reads it.",
    )
    # The engine example this row was loaded from (``engine.examples``), so relative paths
    # in it (an example's pcap file) resolve against the examples directory; "" otherwise.
    example = models.CharField(max_length=100, blank=True, db_index=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="scenarios",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("home")  # the lab page, where stored scenarios are run
