"""The board link and the HIL plugin, on the virtual board (or a real one with --board PORT)."""

from __future__ import annotations

import pytest

from mpguard.errors import BoardNotAnswering, DeviceError, DeviceRefused, NoPortError
from mpguard.link import BoardLink


def test_exec_eval_and_device_exception(board):
    assert board.exec("print(6 * 7)").strip() == "42"
    assert board.eval("[1, 'a', {'k': None}]") == [1, "a", {"k": None}]
    with pytest.raises(DeviceError) as ei:
        board.exec("raise ValueError('nope')")
    assert ei.value.exc_type == "ValueError"
    assert "nope" in str(ei.value)
    # the link is still usable after a device exception
    assert board.eval("1 + 1") == 2


def test_rpc_call_returns_json_or_typed_refusal(board):
    board.put(b"from guard import GuardError\n"
              b"def ok(a, b):\n    return {'sum': a + b}\n"
              b"def no():\n    raise GuardError('rollback', 7)\n", "/rpcdemo.py")
    board.mkdir("/lib/guard")
    board.put(b"class GuardError(Exception):\n    pass\n", "/lib/guard/__init__.py")
    assert board.call("rpcdemo.ok", 2, 3) == {"sum": 5}
    with pytest.raises(DeviceRefused) as ei:
        board.call("rpcdemo.no")
    assert ei.value.reason == "rollback" and ei.value.detail == 7
    with pytest.raises(DeviceError) as ei2:
        board.call("rpcdemo.missing")
    assert ei2.value.exc_type == "ImportError"


def test_files_put_get_binary(board):
    data = bytes(range(256)) * 9
    board.mkdir("/d/e")
    board.put(data, "/d/e/blob.bin")
    assert board.get("/d/e/blob.bin") == data
    assert "blob.bin" in board.listdir("/d/e")
    board.remove("/d/e/blob.bin")
    assert not board.exists("/d/e/blob.bin")
    with pytest.raises(DeviceError) as ei:
        board.get("/no/such/file")
    assert ei.value.exc_type == "OSError"


def test_soft_and_hard_reset_keep_files_and_reconnect(board):
    board.put(b"print('boot ran')\n", "/boot.py")
    board.exec("marker = 1")
    assert board.eval("'marker' in globals()") is True
    board.soft_reset()
    assert board.eval("'marker' in globals()") is False  # a fresh interpreter
    assert board.exists("/boot.py")
    out = board.hard_reset(wait=5.0, until=b">>> ")
    assert b"boot ran" in out
    assert board.exists("/boot.py")
    board.remove("/boot.py")


def test_no_port_and_not_answering(tmp_path):
    with pytest.raises(NoPortError):
        BoardLink(str(tmp_path / "ttyNOPE"))
    # a regular file opens like a port but never answers
    f = tmp_path / "deaf"
    f.write_bytes(b"")
    with pytest.raises((BoardNotAnswering, NoPortError)):
        BoardLink(str(f), connect_timeout=1.0)


def test_sim_fixture_controls(sim, board):
    before = sim.stats()
    board.put(b"x" * 10000, "/wear.bin")
    after = sim.stats()
    assert after["writes"] > before["writes"]
