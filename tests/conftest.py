"""Shared fixtures: paths to the test data copied from the project's shared references,
and a check, before any test runs, that the browser the browser tests drive is there."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

#: ``HYPOTHESIS_PROFILE=full``: the long opt-in run of the property tests (tests whose
#: own ``max_examples`` reads ``FULL_EXAMPLES`` take it too); the default keeps ``make
#: test`` within its time budget.
FULL_EXAMPLES = 3000
settings.register_profile("full", max_examples=FULL_EXAMPLES, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

DATA = Path(__file__).parent / "data"
#: The Chromium the browser tests drive (Debian's; Playwright never downloads one here).
CHROMIUM = os.environ.get("RSSLAB_CHROMIUM", "/usr/bin/chromium")


def pytest_collection_modifyitems(config, items):
    """Stop at once, before minutes of other tests, when browser tests are selected and
    their Chromium is missing: say the one command that installs it."""
    if not Path(CHROMIUM).exists() and any(item.get_closest_marker("browser")
                                           for item in items):
        pytest.exit(f"{CHROMIUM} is missing: apt-get install -y chromium (what .ci/run "
                    f"does), or deselect the browser tests with -m 'not browser'", returncode=4)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
