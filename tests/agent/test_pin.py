"""guard.pin on the MicroPython unix port: the anchors' digest pinned in eFuse, read through
guard.hw (a machine stand-in serving eFuse words) and enforced where the installer loads the
anchors (guard.install.load_anchors)."""

from __future__ import annotations

import hashlib
import json

import pytest

from mpguard import boards

ANCHORS = json.dumps({"v": 1, "keys": {"k1": "BAAA"}}, sort_keys=True).encode()
OTHER = json.dumps({"v": 1, "keys": {"evil": "BAAB"}}, sort_keys=True).encode()

HARNESS = """
import json, os
import guard.hw as hw, guard.pin as pin
from guard import GuardError
class Mem:
    def __init__(self, words):
        self.words = words
    def __getitem__(self, addr):
        w = self.words.get(addr, 0)
        return w - 0x100000000 if w & 0x80000000 else w   # signed, as ESP32 mem32 may be
class M:
    def __init__(self, words):
        self.mem32 = Mem(words)
hw.use(mach=M({int(k): v for k, v in IN['words'].items()}))
pin.chip = lambda: IN['chip']
R = []
def P(*a):
    R.append(' '.join(str(x) for x in a))
"""


def words_for(kind: str, data: bytes | None) -> dict[str, int]:
    """The eFuse words of `kind`'s pin with SHA-256(data) burned (None: blank)."""
    spec = boards.load_profile(kind)["anchors_pin"]
    digest = hashlib.sha256(data).digest()[: spec["bytes"]] if data else bytes(spec["bytes"])
    return {str(a): int.from_bytes(digest[4 * i : 4 * i + 4], "little")
            for i, a in enumerate(spec["addrs"])}


def run(mp, code, kind, pinned, chip=None, heapsize=None, **extra):
    data = {"words": words_for(kind, pinned), "chip": chip or kind.upper(), **extra}
    return "\n".join(mp.out(HARNESS + code + "\nOUT(R)\n", data, heapsize=heapsize))


@pytest.mark.parametrize("kind", ["esp32", "esp32s2", "esp32s3", "esp32c3"])
def test_state_follows_the_burned_words(mp, kind):
    code = "for d in IN['d']:\n    P(pin.state(d.encode()))\n"
    d = [ANCHORS.decode(), OTHER.decode()]
    assert run(mp, code, kind, None, d=d).split() == ["unpinned", "unpinned"]
    assert run(mp, code, kind, ANCHORS, d=d).split() == ["match", "mismatch"]


def test_unknown_chip_has_no_pin(mp):
    out = run(mp, "P(pin.state(b'x'), pin.pinned())\n", "esp32", ANCHORS, chip="LINUX")
    assert out.split() == ["None", "None"]


def test_check_refuses_other_anchors(mp):
    code = """
P(pin.check(IN['a'].encode()) == IN['a'].encode())
try:
    pin.check(IN['o'].encode())
except GuardError as e:
    P('refused', e.args[0])
"""
    out = run(mp, code, "esp32", ANCHORS, a=ANCHORS.decode(), o=OTHER.decode())
    assert out.split() == ["True", "refused", "anchors_pin"]


def test_chip_name_from_the_firmware(mp):
    # the esp32 port's machine string: "<board> with <MCU>"; the dash form is accepted too
    real = """
import sys, guard.pin as pin
class U:
    def __init__(self, m):
        self.machine = m
class FakeOs:
    pass
sys.modules['os'] = FakeOs
R = []
for m in IN['m']:
    FakeOs.uname = lambda m=m: U(m)
    R.append(pin.chip())
OUT(R)
"""
    names = ["Generic ESP32 module with ESP32", "ESP32S3 module with ESP32S3",
             "x with esp32-c3", "mpguard virtual board sim with ESP32"]
    assert mp.out(real, {"m": names}) == ["ESP32", "ESP32S3", "ESP32C3", "ESP32"]


def test_install_loads_anchors_through_the_pin(mp, tmp_path):
    # guard.install.load_anchors on a real file: accepted while it matches, refused by name
    # (anchors_pin) once another anchors file replaces it; unpinned boards take any.
    code = """
import guard.install as inst
inst.ANCHORS = IN['path']
for body in (IN['a'], IN['o']):
    with open(IN['path'], 'w') as f:
        f.write(body)
    try:
        P(sorted(inst.load_anchors()))
    except GuardError as e:
        P('refused', e.args[0])
"""
    anchors = json.dumps({"v": 1, "keys": {"k1": "BA" + "A" * 86}}, sort_keys=True).encode()
    other = json.dumps({"v": 1, "keys": {"evil": "BA" + "B" * 86}}, sort_keys=True).encode()
    extra = {"path": str(tmp_path / "anchors.json"), "a": anchors.decode(), "o": other.decode()}
    # (the agent's .py sources are compiled on the heap here: more room than the 64K)
    out = run(mp, code, "esp32", anchors, heapsize="256K", **extra).splitlines()
    assert out == ["['k1']", "refused anchors_pin"]
    out = run(mp, code, "esp32", None, heapsize="256K", **extra).splitlines()
    assert out == ["['k1']", "['evil']"]
