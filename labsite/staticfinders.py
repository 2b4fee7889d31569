"""A static-files finder that serves the Plotly.js bundled in the installed plotly package.

The lab must work offline, so Plotly.js never comes from a CDN. The plotly Python package
already ships the minified bundle (``plotly/package_data/plotly.min.js``); this finder
exposes exactly that one file as ``vendor/plotly.min.js`` — templates use
``{% static 'vendor/plotly.min.js' %}``, the ASGI static handler serves it, and
``collectstatic`` copies it like any other file. The version therefore always matches the
installed package pinned in requirements.txt.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import Error
from django.core.files.storage import FileSystemStorage

PLOTLY_URL_PATH = "vendor/plotly.min.js"


def plotly_bundle_path() -> Path:
    """Absolute path of ``plotly.min.js`` inside the installed plotly package."""
    import plotly  # imported lazily: only static serving and collectstatic need it

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


class PlotlyFinder(BaseFinder):
    """Finds ``vendor/plotly.min.js`` and nothing else."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        bundle = plotly_bundle_path()
        self.storage = FileSystemStorage(location=str(bundle.parent))
        self.storage.prefix = "vendor"
        self.bundle = bundle

    def check(self, **kwargs):
        if not self.bundle.is_file():
            return [Error(f"plotly.min.js not found at {self.bundle}", id="labsite.E001")]
        return []

    def find(self, path, find_all=False, **kwargs):
        if path == PLOTLY_URL_PATH and self.bundle.is_file():
            return [str(self.bundle)] if find_all else str(self.bundle)
        return [] if find_all else None

    def list(self, ignore_patterns):
        if self.bundle.is_file():
            yield self.bundle.name, self.storage
