"""Power cut at every flash block write of an install (docs/decisions/0006-install.md).

The board runs app 1.0 (confirmed, seq 1). For a cut point N, one MicroPython process
installs the 2.0 bundle on a fresh copy of that flash image with power failing at the N-th
block write (program or erase): the block device raises and nothing more reaches the flash.
A second process boots the image as the board would after power returns, and must run a
complete app, 1.0 or 2.0 (every file byte for byte as in its manifest), then take a later
deploy (3.0, seq 3) and boot it. Small bundle: every cut point. Large bundle: a seeded
random sample. The number of cut points tried is printed.
"""

from __future__ import annotations

import random
import shutil

import pytest
from agentboard import Board, app, manifest_hashes

# The update as the board lives it: install, then the first (trial) boot, in which the app
# confirms itself. Cut points span all of it.
INSTALL = """
FL.cut = IN["cut"]
r = None
try:
    r = install(0)
    boot()
except Cut:
    pass
OUT([FL.hit, r, FL.writes])
"""

BOOT_AND_REDEPLOY = """
booted = boot()
OUT([booted, app_files(booted[0]) if booted[0] else None, S.status()])
OUT(install(0))
OUT(boot())
OUT(S.status())
"""


def _prepare(fboard, signer, extra):
    assert fboard.out("OUT(install(0))", [signer.bundle(app("1.0"), seq=1)])["status"] == "installed"
    assert "CONFIRMED True" in fboard.run("boot()").stdout
    v2 = app("2.0", extra=extra)
    return v2, signer.bundle(v2, seq=2), signer.bundle(app("3.0"), seq=3)


def _writes_of_install(fboard, b2):
    image = fboard.path.read_bytes()
    hit, r, writes = fboard.out(INSTALL, [b2], cut=None)
    assert not hit and r["status"] == "installed"
    fboard.path.write_bytes(image)
    return writes


def _cut_and_boot(fboard, pristine, n, b2, b3, v1, v2):
    shutil.copyfile(pristine, fboard.path)
    hit, r, writes = fboard.out(INSTALL, [b2], cut=n)
    assert hit and writes == n - 1, (n, r)  # power failed at write n, nothing after it
    res = fboard.run(BOOT_AND_REDEPLOY, [b3])
    (booted, files, st), deploy, booted3, st3 = res.outputs
    slot, _ = booted
    old, new = manifest_hashes(v1), manifest_hashes(v2)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("APP ")]
    if files == old:
        assert slot == st["active"] and lines[0] == "APP demo 1.0", (n, st)
    elif files == new:
        assert lines[0] == "APP demo 2.0" and st["active"] == slot, (n, st)
    else:
        pytest.fail(f"cut at write {n}: the board booted neither complete app: {booted} {st}")
    assert deploy["status"] == "installed", (n, deploy)
    assert lines[1] == "APP demo 3.0" and st3["seq"] == 3 and st3["app"] == "demo", (n, st3)
    return "new" if files == new else "old"


def _sweep(fboard, signer, extra, sample=None, seed=0):
    v1 = app("1.0")
    v2, b2, b3 = _prepare(fboard, signer, extra)
    pristine = fboard.path.with_name("pristine.img")
    shutil.copyfile(fboard.path, pristine)
    total = _writes_of_install(fboard, b2)
    points = list(range(1, total + 1))
    if sample is not None:
        # a seeded random sample, plus the tail where the state flips and the first boot runs
        points = sorted(set(random.Random(seed).sample(points, sample)) | set(points[-20:]))
    seen = {"old": 0, "new": 0}
    for n in points:
        seen[_cut_and_boot(fboard, pristine, n, b2, b3, v1, v2)] += 1
    print(f"\npower-cut sweep: {len(points)} cut points tried of {total} block writes (install + first boot) "
          f"({extra} B extra payload): booted old app {seen['old']}x, new app {seen['new']}x")
    return total, points, seen


def test_power_cut_at_every_write_small_bundle(fboard, signer):
    total, points, seen = _sweep(fboard, signer, extra=6000)
    assert len(points) == total > 30
    # a cut before the state flip keeps the old app; after it, the new one boots on trial
    assert seen["old"] >= 1 and seen["new"] >= 1


@pytest.mark.slow
def test_power_cut_seeded_sample_large_bundle(mp, agent_mpy, tmp_path, signer):
    board = Board(mp, agent_mpy, tmp_path / "flash.img", blocks=256)  # 1 MiB of flash
    board.run("provision(IN['anchors'])\nOUT(1)", anchors=signer.anchor_json)
    total, points, seen = _sweep(board, signer, extra=200 * 1024, sample=40, seed=20261125)
    assert total > 1000 and 40 <= len(points) <= 60
    assert seen["old"] >= 1 and seen["new"] >= 1
