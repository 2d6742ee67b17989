"""Power cut at every flash block write of an install (docs/decisions/0006-install.md).

The board runs app 1.0 (confirmed, seq 1). For a cut point N, one MicroPython process
installs the 2.0 bundle on a fresh copy of that flash image with power failing at the N-th
block write (program or erase): the block device raises and nothing more reaches the flash.
A second process boots the image as the board would after power returns, and must run a
complete app, 1.0 or 2.0 (every file byte for byte as in its manifest), then take a later
deploy (3.0, seq 3) and boot it. Small bundle: every cut point. Large bundle: a seeded
random sample. The number of cut points tried is printed. The cut points run on a few boards
at once (cuts.py), each point on a fresh copy of the image.

From a pending trial (issue #14): 1.0 confirmed, 2.0 installed on trial, then 3.0 is
installed with power failing at every write: the board boots a complete 1.0, 2.0 or 3.0,
never a slot half written or half emptied, and takes seq 4 afterwards.
"""

from __future__ import annotations

import random
import shutil

import cuts
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


def _prepare(fboard, signer, extra, pending=False):
    """(old apps the board may boot, the app installed under power cuts, its bundle, the
    bundle of the next deploy)."""
    assert fboard.out("OUT(install(0))", [signer.bundle(app("1.0"), seq=1)])["status"] == "installed"
    assert "CONFIRMED True" in fboard.run("boot()").stdout
    old = [app("1.0")]
    seq = 2
    if pending:  # 2.0 waits on trial (never booted yet)
        old.append(app("2.0"))
        assert fboard.out("OUT(install(0))", [signer.bundle(app("2.0"), seq=2)])["slot"] == "b"
        seq = 3
    new = app(f"{seq}.0", extra=extra)
    return old, new, signer.bundle(new, seq=seq), signer.bundle(app("9.0"), seq=seq + 1)


def _writes_of_install(fboard, b2):
    image = fboard.path.read_bytes()
    hit, r, writes = fboard.out(INSTALL, [b2], cut=None)
    assert not hit and r["status"] == "installed"
    fboard.path.write_bytes(image)
    return writes


def _cut_and_boot(fboard, pristine, n, b2, b3, olds, new):
    shutil.copyfile(pristine, fboard.path)
    hit, r, writes = fboard.out(INSTALL, [b2], cut=n)
    assert hit and writes == n - 1, (n, r)  # power failed at write n, nothing after it
    res = fboard.run(BOOT_AND_REDEPLOY, [b3])
    (booted, files, st), deploy, booted3, st3 = res.outputs
    slot, _ = booted
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("APP ")]
    complete = [(manifest_hashes(a), a) for a in olds + [new]]
    which = [a for h, a in complete if files == h]
    if not which:
        pytest.fail(f"cut at write {n}: the board booted neither complete app: {booted} {st}")
    version = which[0][1][1].decode().split("'")[1]  # lib/helper.py: V = 'x.y'
    assert lines[0] == f"APP demo {version}", (n, lines, st)
    assert deploy["status"] == "installed", (n, deploy)
    assert lines[1] == "APP demo 9.0" and st3["seq"] == st3["hi"] and st3["app"] == "demo", (n, st3)
    return "new" if which[0] is new else "old"


def _sweep(fboard, signer, extra, sample=None, seed=0, pending=False):
    olds, new, b2, b3 = _prepare(fboard, signer, extra, pending)
    pristine = fboard.path.with_name("pristine.img")
    shutil.copyfile(fboard.path, pristine)
    total = _writes_of_install(fboard, b2)
    points = list(range(1, total + 1))
    if sample is not None:
        # a seeded random sample, plus the tail where the state flips and the first boot runs
        points = sorted(set(random.Random(seed).sample(points, sample)) | set(points[-20:]))
    seen = {"old": 0, "new": 0}
    boards = [fboard] + [fboard.twin(fboard.path.with_name(f"cut{i}.img"))
                         for i in range(1, cuts.workers())]
    for got in cuts.each(points, boards,
                         lambda b, n: _cut_and_boot(b, pristine, n, b2, b3, olds, new)):
        seen[got] += 1
    print(f"\npower-cut sweep{' from a pending trial' if pending else ''}: {len(points)} cut "
          f"points tried of {total} block writes (install + first boot) ({extra} B extra "
          f"payload): booted an old app {seen['old']}x, the new app {seen['new']}x")
    return total, points, seen


def test_power_cut_at_every_write_small_bundle(fboard, signer):
    total, points, seen = _sweep(fboard, signer, extra=6000)
    assert len(points) == total > 30
    # a cut before the state flip keeps the old app; after it, the new one boots on trial
    assert seen["old"] >= 1 and seen["new"] >= 1


def test_power_cut_at_every_write_from_a_pending_trial(fboard, signer):
    total, points, seen = _sweep(fboard, signer, extra=2000, pending=True)
    assert len(points) == total > 30
    assert seen["old"] >= 1 and seen["new"] >= 1


@pytest.mark.slow
def test_power_cut_seeded_sample_large_bundle(mp, agent_mpy, tmp_path, signer):
    board = Board(mp, agent_mpy, tmp_path / "flash.img", blocks=256)  # 1 MiB of flash
    board.run("provision(IN['anchors'])\nOUT(1)", anchors=signer.anchor_json)
    total, points, seen = _sweep(board, signer, extra=200 * 1024, sample=40, seed=20261125)
    assert total > 1000 and 40 <= len(points) <= 60
    assert seen["old"] >= 1 and seen["new"] >= 1
