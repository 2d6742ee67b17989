"""Fixtures of this suite, on top of the mpguard plugin's (installing mpguard is enough)."""

from pathlib import Path

import pytest

APP = Path(__file__).parent / "app"


@pytest.fixture
def app_release(mpguard_release):
    """The app of this folder, signed as version 1.0.0 by the test's own project."""
    return mpguard_release(APP, "1.0.0", app="example")
