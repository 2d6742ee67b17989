"""guard.rpc on MicroPython: the host's one way into the agent (names and JSON arguments).

One framing for every answer: a line `\\x1eMPG:` + JSON {"ok": value} or {"err": [reason,
detail]}; a non-GuardError exception stays a device exception. stream() hands the function a
guard.xfer.Reader and aborts the transfer when the function refuses before reading it all.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from mpguard import xfer
from mpguard.errors import DeviceError

MARK = "\x1eMPG:"

# A streaming function for the tests, registered as guard.tstream (the table maps names to
# modules of the guard package, imported when called).
FAKE = """
import sys, guard, guard.rpc as rpc
from guard import GuardError
class _M:
    pass
m = _M()
def take(stream, length, limit):
    import hashlib, binascii
    h = hashlib.sha256()
    buf = bytearray(100)
    n = 0
    while True:
        k = stream.readinto(buf)
        if not k:
            break
        h.update(memoryview(buf)[:k])
        n += k
        if n > limit:
            raise GuardError("too_large", n)
    return {"n": n, "sha": binascii.hexlify(h.digest()).decode()}
m.take = take
sys.modules["guard.tstream"] = m
rpc._STREAMS["test.take"] = ("tstream", "take")
"""


def answers(stdout: str) -> list:
    return [json.loads(ln[ln.index(MARK) + len(MARK):]) for ln in stdout.split("\n")
            if MARK in ln]


def test_call_answers_one_framed_line(mp):
    res = mp.run("import guard.rpc\nguard.rpc.run('update.status', '[]')")
    lines = [ln for ln in res.stdout.split("\n") if ln]
    assert len(lines) == 1 and lines[0].startswith(MARK)
    st = answers(res.stdout)[0]["ok"]
    assert st["seq"] == 0 and st["active"] is None and st["refused"] is None


@pytest.mark.parametrize("name, args, want", [
    ("no.such", "[]", ["bad_call", "no.such"]),
    ("update.install", "[]", ["bad_call", "update.install"]),  # streaming only
    ("update.status", "{}", ["bad_call", "arguments"]),
    ("update.status", "not json", ["bad_call", "arguments"]),
    ("fs.hashes", '["/x"]', ["bad_arg", "paths"]),
])
def test_refusals_are_framed_with_reason_and_detail(mp, name, args, want):
    res = mp.run(f"import guard.rpc\nguard.rpc.run({name!r}, {args!r})")
    assert answers(res.stdout) == [{"err": want}]


def test_other_exceptions_stay_device_exceptions(mp):
    with pytest.raises(DeviceError) as ei:
        mp.run("import guard.rpc\nguard.rpc.run('update.status', '[1]')", expect_error=True)
    assert ei.value.exc_type == "TypeError"


def test_detail_that_is_not_json_is_sent_as_text(mp):
    code = ("import guard.rpc as rpc\nfrom guard import GuardError\n"
            "rpc._refuse(GuardError('bad_hash', b'x'))\nrpc._refuse(GuardError('no_space'))")
    assert answers(mp.run(code).stdout) == [{"err": ["bad_hash", "b'x'"]},
                                             {"err": ["no_space", None]}]


def test_a_call_loads_only_its_module(mp):
    code = ("import sys, guard.rpc\nguard.rpc.run('update.status', '[]')\n"
            "OUT(sorted(m for m in sys.modules if m.startswith('guard')))")
    assert mp.out(code) == ["guard", "guard.rpc", "guard.state"]


def test_hashes_of_files_and_a_folder(mp, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.bin").write_bytes(b"abc")
    (tmp_path / "d" / "sub").mkdir()
    p = str(tmp_path / "d")
    code = f"import guard.info\nOUT(guard.info.hashes([{p + '/none'!r}], {p!r}))"
    assert mp.out(code) == {p + "/none": None, p + "/a.bin": hashlib.sha256(b"abc").hexdigest()}


def _stream(mp, wire: bytes, payload_len: int, sha: str, limit: int):
    code = FAKE + (f"rpc.stream('test.take', '[{limit}]', {payload_len}, {sha!r})\n"
                   "sys.stdout.write('\\nREST:' + repr(sys.stdin.buffer.read()) + '\\n')\n")
    return mp.run(code, stdin=wire)


def test_stream_hands_the_function_a_reader(mp):
    payload = bytes(range(256)) * 5
    sha = hashlib.sha256(payload).hexdigest()
    res = _stream(mp, xfer.encode(payload) + b"after", len(payload), sha, limit=10**6)
    frames = len(xfer.encode(payload)) // xfer.FRAME
    assert res.stdout.count("\x06") == frames  # every frame acked
    assert answers(res.stdout) == [{"ok": {"n": len(payload), "sha": sha}}]
    assert "REST:b'after'" in res.stdout  # nothing read past the payload


def test_stream_refused_early_aborts_and_leaves_the_link_clean(mp):
    payload = bytes(range(256)) * 20
    sha = hashlib.sha256(payload).hexdigest()
    enc = xfer.encode(payload)
    # the host sent 3 frames before it saw the NAK, then the abort frame, then new input
    wire = enc[: 3 * xfer.FRAME] + xfer.ABORT_FRAME + b"next"
    res = _stream(mp, wire, len(payload), sha, limit=150)
    assert "\x15" in res.stdout  # NAK: the host stops sending
    assert answers(res.stdout) == [{"err": ["too_large", 200]}]
    assert "REST:b'next'" in res.stdout  # frames in flight dropped up to the abort frame


def test_stream_of_an_unknown_name_aborts_before_reading(mp):
    wire = xfer.encode(b"x" * 300)[: xfer.FRAME] + xfer.ABORT_FRAME + b"next"
    res = mp.run("import sys, guard.rpc\nguard.rpc.stream('no.such', '[]', 300, '00')\n"
                 "sys.stdout.write('\\nREST:' + repr(sys.stdin.buffer.read()) + '\\n')\n",
                 stdin=wire)
    assert "\x06" not in res.stdout and "\x15" in res.stdout
    assert answers(res.stdout) == [{"err": ["bad_call", "no.such"]}]
    assert "REST:b'next'" in res.stdout
