"""BoardLink.put on a virtual board (real MicroPython, the real mpremote transport): what it
writes is the file, byte for byte, for any bytes and any size around its chunks; each chunk
travels as the shorter of a bytes literal and base64 (mpguard.linkfiles); a write the board
refuses is a DeviceError with the board's errno."""

from __future__ import annotations

import os

import pytest

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
