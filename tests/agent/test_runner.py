"""The device-code test runner itself: real MicroPython, limited heap, readable failures."""

import pytest

from mpguard.errors import DeviceError


def test_runs_on_micropython_not_cpython(mp):
    res = mp.out("import sys\nOUT([sys.implementation.name, sys.implementation.version[:2]])")
    assert res == ["micropython", [1, 29]]


def test_data_in_and_out(mp):
    assert mp.out("OUT({'sum': sum(IN['xs']), 'echo': IN['s']})", {"xs": [1, 2, 3], "s": "é"}) == {
        "sum": 6,
        "echo": "é",
    }


def test_heap_is_limited_to_64k(mp):
    code = "import gc\ngc.collect()\nOUT(gc.mem_free() + gc.mem_alloc())"
    total = mp.out(code)
    assert 60 * 1024 <= total <= 64 * 1024
    with pytest.raises(DeviceError) as ei:
        mp.run("b = bytearray(80 * 1024)", expect_error=True)
    assert ei.value.exc_type == "MemoryError"


def test_device_traceback_is_readable(mp):
    with pytest.raises(DeviceError) as ei:
        mp.run("def f():\n    raise ValueError('boom')\nf()", expect_error=True)
    assert ei.value.exc_type == "ValueError"
    assert "boom" in str(ei.value)
    assert "Traceback" in ei.value.device_traceback
    assert "<device code>" in ei.value.device_traceback


def test_agent_is_importable_and_reports_facts(mp):
    facts = mp.out("import guard.info\nOUT(guard.info.facts())")
    assert facts["mpy_version"] == 6
    assert facts["micropython"].startswith("1.29")
    assert facts["heap_free"] > 0
