"""Shared fixtures: a real X server (Xvfb) for the window tests, Python's own signal handling, and the repository's
root."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def default_signals():
    """Python's own Ctrl+C and SIGTERM handling, whatever started the tests (in the background, SIGINT is
    ignored); put back afterwards."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="session")
def xvfb() -> str:
    """A real X server (Xvfb) on a free display; yields its name (":N"). CI installs Xvfb, so it must be there."""
    from crew2 import x11

    if shutil.which("Xvfb") is None:
        if os.environ.get("CI"):
            pytest.fail("Xvfb is not installed (apt-get install xvfb)")
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    with x11.virtual_display("1280x720x24", first=90) as display:
        yield display
