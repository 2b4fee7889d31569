"""Template filters of the exercise pages."""

from django import template

register = template.Library()


@register.filter
def num(value) -> str:
    """A score or cost as people write it: ``6``, ``0.5``, ``2.75`` (never ``0.50``)."""
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return ""
