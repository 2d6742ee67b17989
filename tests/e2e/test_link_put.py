"""BoardLink.put on a virtual board (real MicroPython, the real mpremote transport): what it
writes is the file, byte for byte, for any bytes and any size around its chunks; each chunk
travels as the shortest of a bytes literal, base64 and, on a board with `deflate`, base64 of
its own raw deflate stream (mpguard.linkfiles), and a board without `deflate` gets the first
two; a write the board refuses is a DeviceError with the board's errno."""

from __future__ import annotations

import os

import pytest
from mpremote.transport_serial import SerialTransport

from mpguard import linkfiles
from mpguard.errors import DeviceError
from mpguard.link import BoardLink

pytestmark = pytest.mark.timeout(120)
C = linkfiles.PUT_CHUNK


def test_chunks_go_as_the_shorter_form():
    text = b"def f(x):\n    return x + 1\n" * 40
    assert linkfiles._chunk_code(text[:C]).startswith("w(b")  # text: a literal, about 1.05x
    binary = bytes(range(256)) * 4
    code = linkfiles._chunk_code(binary)
    assert code.startswith("w(d('") and len(code) < len(repr(binary))  # .mpy-like: base64
    # a board with `deflate`: compressed where that is shorter, and only there
    zipped = linkfiles._chunk_code(text[:C], True)
    assert zipped.startswith("w(_mpg_z(d('") and zipped.endswith(f"'),{C}))")
    assert len(zipped) < len(linkfiles._chunk_code(text[:C])) // 3
    noise = os.urandom(C)
    assert linkfiles._chunk_code(noise, True) == linkfiles._chunk_code(noise)
    assert linkfiles._chunk_code(b"", True) == "w(b'')"


def _spy(monkeypatch) -> list[str]:
    """The `write` calls put sends, as it sends them."""
    sent: list[str] = []
    real = linkfiles._chunk_code

    def code(chunk: bytes, inflate: bool = False) -> str:
        sent.append(real(chunk, inflate))
        return sent[-1]

    monkeypatch.setattr(linkfiles, "_chunk_code", code)
    return sent


def test_compressible_files_travel_deflated_and_a_board_without_deflate_gets_base64(
        sim_factory, monkeypatch):
    info = sim_factory("zput")
    source = b"".join(b"def f%d(x):\n    return x * %d + 1  # caf\xc3\xa9\n" % (i, i)
                      for i in range(300))
    mpy_like = bytes(range(256)) * 9 + b"\x00" * 700  # binary, partly compressible
    sent = _spy(monkeypatch)
    execs: list[str] = []  # every exec of the link's transport
    real_exec = SerialTransport.exec

    def exec_(self, command, data_consumer=None):
        execs.append(command if isinstance(command, str) else command.decode())
        return real_exec(self, command, data_consumer)

    monkeypatch.setattr(SerialTransport, "exec", exec_)
    with BoardLink(info.port) as link:
        for name, data in (("/src.py", source), ("/mod.mpy", mpy_like)):
            sent.clear()
            link.put(data, name)
            assert link.get(name) == data, name
            assert any(c.startswith("w(_mpg_z(d('") for c in sent), (name, [c[:8] for c in sent])
            assert sum(map(len, sent)) < len(data), name  # fewer bytes on the wire than the file
        # the inflater went once for the REPL session, not with every file
        assert sum(c.startswith("from io import BytesIO") for c in execs) == 1, execs
    # the same board without `deflate` (what `from deflate import ...` finds in sys.modules
    # decides), on a new link after a soft reset: put falls back to literals and base64, byte
    # for byte the same file, and does not ask again for the next file
    with BoardLink(info.port) as link:
        link.soft_reset()
        link.exec("import sys\nsys.modules['deflate'] = sys")
        sent.clear()
        execs.clear()
        link.put(source, "/src2.py")
        link.put(source, "/src3.py")
        assert link.get("/src2.py") == source and link.get("/src3.py") == source
        assert sent and not any(c.startswith("w(_mpg_z(") for c in sent)
        assert sum(c.startswith("from io import BytesIO") for c in execs) == 1, execs


def test_put_writes_every_byte_at_every_size(sim_factory):
    info = sim_factory("put")
    cases = {
        "/empty": b"",
        "/one": b"\x00",
        "/all": bytes(range(256)) * 5,  # every byte value, across a chunk boundary
        "/edge": os.urandom(C),
        "/edge1": os.urandom(C + 1),
        "/text.py": b"print('caf\xc3\xa9 \\\\ \\' \" \\n')\n" * 120,  # quotes, escapes, UTF-8
        "/mixed": (b"abc" * 400 + os.urandom(700)) * 3,
    }
    seen = []
    with BoardLink(info.port) as link:
        for path, data in cases.items():
            link.put(data, path, progress=lambda n, total: seen.append((n, total)))
            assert link.get(path) == data, path
        big = cases["/mixed"]
        assert [n for n, t in seen if t == len(big)][-1] == len(big)
        # a missing folder: the board's ENOENT, and no file
        with pytest.raises(DeviceError) as e:
            link.put(b"x" * 10, "/no/such/dir/f")
        assert e.value.exc_type == "OSError" and getattr(e.value, "errno", None) == 2
        assert not link.exists("/no")
