"""The board link and the HIL plugin, on the virtual board (or a real one with --board PORT)."""

from __future__ import annotations

import hashlib

import pytest

from mpguard.agent import package as agentpkg
from mpguard.errors import BoardNotAnswering, DeviceError, DeviceRefused, NoPortError
from mpguard.link import BoardLink

AGENT = agentpkg.agent_dir()


def test_exec_eval_and_device_exception(board):
    assert board.exec("print(6 * 7)").strip() == "42"
    assert board.eval("[1, 'a', {'k': None}]") == [1, "a", {"k": None}]
    with pytest.raises(DeviceError) as ei:
        board.exec("raise ValueError('nope')")
    assert ei.value.exc_type == "ValueError"
    assert "nope" in str(ei.value)
    # the link is still usable after a device exception
    assert board.eval("1 + 1") == 2


# The agent modules these tests need, put as .py (no `agent install`, no project).
RPC_MODULES = ["__init__.py", "rpc.py", "info.py", "hw.py", "state.py", "xfer.py"]


def _put_agent(board) -> None:
    board.mkdir("/lib/guard")
    for name in RPC_MODULES:
        board.put((AGENT / "guard" / name).read_bytes(), f"/lib/guard/{name}")


def test_rpc_call_returns_json_or_typed_refusal(board):
    _put_agent(board)
    st = board.call("update.status")
    assert st["seq"] == 0 and st["active"] is None and st["trial"] is None
    rpc_py = (AGENT / "guard" / "rpc.py").read_bytes()
    assert board.call("fs.hashes", [["/lib/guard/rpc.py", "/no/such"]]) == {
        "/lib/guard/rpc.py": hashlib.sha256(rpc_py).hexdigest(), "/no/such": None}
    facts = board.call("info.facts")
    assert facts["mpy"] & 0xFF == facts["mpy_version"] > 0 and facts["heap_free"] > 0
    # refusals: the agent's reason and detail, typed
    with pytest.raises(DeviceRefused) as ei:
        board.call("no.such")
    assert (ei.value.reason, ei.value.detail) == ("bad_call", "no.such")
    with pytest.raises(DeviceRefused) as ei:
        board.call("update.install")  # a streaming name is not a plain call
    assert ei.value.reason == "bad_call"
    with pytest.raises(DeviceRefused) as ei:
        board.call("fs.hashes", ["not a list"])
    assert (ei.value.reason, ei.value.detail) == ("bad_arg", "paths")
    # any other exception on the board stays a device exception, traceback kept
    with pytest.raises(DeviceError) as ei2:
        board.call("update.status", [1])
    assert not isinstance(ei2.value, DeviceRefused)
    assert ei2.value.exc_type == "TypeError" and "Traceback" in ei2.value.device_traceback
    # a name that is not one is refused on the host: nothing is sent
    with pytest.raises(ValueError):
        board.call("x'); import os; os.remove('/main.py'); ('")
    assert board.call("update.status")["seq"] == 0  # the link is still usable


def test_stream_refused_early_leaves_the_link_clean(board):
    _put_agent(board)
    data = bytes(range(256)) * 64  # more frames than the board reads before it refuses
    with pytest.raises(DeviceRefused) as ei:
        board.stream("no.such", [], data)
    assert ei.value.reason == "bad_call"
    with pytest.raises(DeviceRefused) as ei:
        board.stream("update.status", [], data)  # a plain call is not a streaming name
    assert ei.value.reason == "bad_call"
    assert board.call("update.status")["seq"] == 0


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


def test_wipe_refuses_a_relative_keep_path_before_removing_anything(board):
    board.put(b"x = 1\n", "/c.py")
    with pytest.raises(ValueError, match="'c.py'"):
        board.wipe(keep=("c.py",))
    assert board.exists("/c.py")
    assert board.wipe(keep=("/c.py",)) == [] and board.exists("/c.py")


def test_mkdir_of_an_existing_path_without_exist_ok_is_a_device_error_with_eexist(board):
    board.mkdir("/d/e")
    board.mkdir("/d/e")  # exist_ok by default
    with pytest.raises(DeviceError) as ei:
        board.mkdir("/d/e", exist_ok=False)
    assert ei.value.errno == 17  # type: ignore[attr-defined]
