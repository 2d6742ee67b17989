"""Shared test helpers: running device code on the pinned MicroPython unix port."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpguard import unixport
from mpguard.errors import DeviceError

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "agent"
# Standard test vectors, vendored with their licence and source (tests/vectors/*/README.md).
VECTORS = Path(__file__).resolve().parent / "vectors"


class MicroPythonRunner:
    """Runs code on MicroPython with agent/ on sys.path and a limited heap.

    A device-side traceback becomes a readable pytest failure (not a host stack dump),
    unless the test asks for the DeviceError with `expect_error=True`.
    """

    def __init__(self, heapsize: str = unixport.DEFAULT_HEAPSIZE):
        self.heapsize = heapsize

    def run(self, code, data=None, *, heapsize=None, expect_error=False, **kw):
        kw.setdefault("path", [AGENT])
        try:
            return unixport.run(code, data, heapsize=heapsize or self.heapsize, **kw)
        except DeviceError as e:
            if expect_error:
                raise
            pytest.fail(f"device code raised:\n{e.device_traceback}", pytrace=False)

    def out(self, code, data=None, **kw):
        return self.run(code, data, **kw).out


@pytest.fixture(scope="session")
def mp() -> MicroPythonRunner:
    return MicroPythonRunner()


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return VECTORS
