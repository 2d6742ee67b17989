"""guard.pin on the MicroPython unix port: the anchors' digest pinned in eFuse, read through
guard.hw (a machine stand-in serving eFuse words), and the installer's refusal (anchors_pin)
on the update tests' board; end to end on the virtual board in tests/e2e/test_fuse_pin.py."""

from __future__ import annotations

import hashlib
import json

import pytest
from agentboard import app

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
hw.chip = lambda: IN['chip']
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
    out = run(mp, "P(pin.state(b'x'))\n", "esp32", ANCHORS, chip="LINUX")
    assert out.split() == ["None"]


def test_chip_name_from_the_firmware(mp):
    # the virtual board's chip; on the unix port (not an ESP32) no chip the table knows
    code = """
import guard.hw as hw, guard.pin as pin
class Sim:
    def board(self):
        return {"kind": "x", "chip": IN}
    def efuse_word(self, addr):
        return 0
hw.use(sim=Sim())
r = [hw.chip(), pin.state(b"x")]
class M:
    pass
hw.use(mach=M())
r += [pin.state(b"x")]
OUT(r)
"""
    assert mp.out(code, "esp32s3") == ["ESP32S3", "unpinned", None]


def test_check_refuses_other_anchors(mp, tmp_path):
    # guard.install calls check(ANCHORS) before it writes anything, and unloads guard.pin
    # after it with every module it loaded
    code = """
import sys
for body in (IN['a'], IN['o']):
    with open(IN['path'], 'w') as f:
        f.write(body)
    import guard.pin as pin
    try:
        P(pin.check(IN['path']) is None)
    except GuardError as e:
        P('refused', e.args[0])
    P('guard.pin' in sys.modules, 'guard.hw' in sys.modules)
"""
    extra = {"path": str(tmp_path / "anchors.json"), "a": ANCHORS.decode(), "o": OTHER.decode()}
    out = run(mp, code, "esp32", ANCHORS, **extra).splitlines()
    assert out == ["True", "True True", "refused anchors_pin", "True True"]


# The virtual board as an ESP32 whose user eFuse block holds the words a test sets.
PINNED = """
class Pinned(Hw):
    words = {}
    def board(self):
        return {"kind": "sim", "chip": "esp32"}
    def efuse_word(self, addr):
        return Pinned.words.get(str(addr), 0)
hw.use(sim=Pinned())
out = []
for w in IN['pins']:
    Pinned.words = w
    before, w0 = snap(), FL.writes
    r = install(0)
    out.append([r, FL.writes - w0, snap() == before])
OUT(out)
"""


def test_an_install_on_a_pinned_board_checks_the_anchors_first(fboard, signer):
    # guard.install calls guard.pin.check before it reads the bundle: anchors other than the
    # pinned ones, or a pin that differs from their digest in its last word only, refuse a
    # genuine bundle with nothing written; the pinned anchors themselves install it
    anchors = signer.anchor_json.encode()
    pinned = words_for("esp32", anchors)
    last = list(pinned)[-1]
    off_by_a_word = dict(pinned, **{last: pinned[last] ^ 1})
    pins = [words_for("esp32", OTHER), off_by_a_word, pinned]
    res = fboard.out(PINNED, [signer.bundle(app("1.0"), seq=1)], pins=pins)
    refused = [{"status": "refused", "reason": "anchors_pin"}, 0, True]
    assert res[:2] == [refused, refused]
    assert res[2][0]["status"] == "installed"
