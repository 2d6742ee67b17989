"""`mpguard sim reflash` / `mpguard.sim.reflash`: a running board powered off, an image written
over its flash, powered on again, on the same port; bad input is refused and changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mpguard.sim as simlib
from mpguard.errors import BoardReset
from mpguard.link import BoardLink
from mpguard.sim import control
from mpguard.sim import folder as simfolder

pytestmark = pytest.mark.timeout(120)
MPGUARD = str(Path(sys.executable).parent / "mpguard")

_WRITE = "with open('/{0}', 'w') as f:\n    f.write('{1}')"
_FILES = "import os\nprint(sorted(os.listdir('/')), open('/who').read())"


@pytest.fixture
def golden(sim_factory, mpr, tmp_path) -> Path:
    """A sim "t" whose flash had /who = 1 when it was saved to golden.img, now /who = 2 and
    /extra; it runs."""
    port = sim_factory().port
    mpr(port, "exec", _WRITE.format("who", "1"))
    simlib.stop("t")
    img = tmp_path / "golden.img"
    shutil.copyfile(simlib.get("t").image, img)
    port = sim_factory().port
    mpr(port, "exec", _WRITE.format("who", "2") + "\n" + _WRITE.format("extra", "x"))
    return img


def test_reflash_is_a_power_cycle_with_the_image_on_the_same_port(golden, mpr):
    port = simlib.get("t").port
    with BoardLink(port) as link:
        simlib.arm_power_cut("t", after=1)  # armed for the old image: disarmed by the reflash
        st0 = simlib.stats("t")
        st = simlib.reflash("t", golden)
        assert (st["reflashes"], st["boots"], st["power_cuts"]) == (1, st0["boots"] + 1, 0)
        assert st["writes"] >= st0["writes"]  # the counters go on (the board's life)
        assert simlib.get("t").port == port and os.path.exists(port)
        # the open link sees a power-on reset, as across a power cut; then it reconnects
        with pytest.raises(BoardReset):
            link.exec("print(1)")
        assert link.exec(_FILES).split() == ["['who']", "1"]
        assert link.eval("__import__('machine').reset_cause()") == 1
        link.exec(_WRITE.format("new", "n" * 5000))  # no cut: the one armed before is gone
        assert simlib.stats("t")["power_cuts"] == 0
        # the same link across a power cut: the same
        simlib.arm_power_cut("t", after=1)
        with pytest.raises(BoardReset):
            link.exec(_WRITE.format("cut", "c" * 5000))
        assert link.eval("__import__('machine').reset_cause()") == 1
    assert simlib.stats("t")["power_cuts"] == 1
    assert golden.read_bytes()[8:16] == b"littlefs"  # the image given is left as it is
    r = subprocess.run([MPGUARD, "sim", "reflash", "t", str(golden)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "powered on" in r.stdout, r.stderr
    assert mpr(port, "exec", _FILES).stdout.split() == ["['who']", "1"]
    assert simlib.stats("t")["reflashes"] == 2


def _bad_images(tmp: Path, golden: Path) -> dict[str, tuple[Path, str]]:
    size = golden.stat().st_size
    (tmp / "small.img").write_bytes(golden.read_bytes()[: size // 2])
    (tmp / "garbage.img").write_bytes(b"\x00" * size)
    other_bs = bytearray(golden.read_bytes())
    for blk in (0, 4096):  # both superblock copies say 8192-byte blocks
        other_bs[blk + 24 : blk + 28] = (8192).to_bytes(4, "little")
    (tmp / "bs.img").write_bytes(other_bs)
    (tmp / "dir.img").mkdir()
    return {
        "missing": (tmp / "nope.img", "does not exist"),
        "a folder": (tmp / "dir.img", "is not a file"),
        "half the size": (tmp / "small.img", f"the flash of sim 't' is {size} bytes"),
        "not littlefs": (tmp / "garbage.img", "not a littlefs image"),
        "other block size": (tmp / "bs.img", "8192-byte blocks"),
        "its own image": (Path(simlib.get("t").image), "flash image of sim 't' itself"),
    }


def test_bad_images_are_refused_and_change_nothing(golden, mpr, tmp_path):
    port = simlib.get("t").port
    own = Path(simlib.get("t").image)
    before_img, st0 = own.read_bytes(), simlib.stats("t")
    for what, (img, message) in _bad_images(tmp_path, golden).items():
        with pytest.raises(simlib.SimError, match=message):
            simlib.reflash("t", img)
        r = subprocess.run([MPGUARD, "sim", "reflash", "t", str(img)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, what
    # the supervisor checks again what it is given (the file may change after the caller's
    # checks): a request that skips them is refused too
    d = simfolder.existing("t")
    for img in (tmp_path / "small.img", tmp_path / "garbage.img", tmp_path / "nope.img"):
        with pytest.raises(simlib.SimError):
            control._ask(d, {"reflash": str(img)}, 10)
    with pytest.raises(simlib.SimError, match="unknown request"):
        control._ask(d, {"format": True}, 10)
    st = simlib.stats("t")
    assert (st["boots"], st["reflashes"], st["power_cuts"]) == (st0["boots"], 0, 0)
    assert own.read_bytes() == before_img
    assert mpr(port, "exec", _FILES).stdout.split() == ["['extra',", "'who']", "2"]
    assert not list((d / simfolder.REQUESTS).iterdir())  # every request and answer taken
    simlib.stop("t")
    with pytest.raises(simlib.SimError, match="not running"):
        simlib.reflash("t", golden)
    with pytest.raises(simlib.SimError, match="no sim named"):
        simlib.reflash("ghost", golden)
