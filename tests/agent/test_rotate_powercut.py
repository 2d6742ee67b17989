"""Power cut at every flash block write of set, stage, commit, revert, the boot-time revert and
an identity rotation's install, on MicroPython over littlefs (guard.rotate).

For each cut point N, one MicroPython process runs the step on a fresh copy of the flash with
power failing at the N-th block write (program or erase); a second process boots the image and
must find the old or the new committed secret, readable and whole, never neither and never a
mix (a value with another epoch's number), and a staged value only as it was or as it was sent.
"""

from __future__ import annotations

import os
import shutil

import cuts
import pytest
from idboard import HostCA, IdBoard, b64u, compile_board, unb64u

from mpguard import keys
from mpguard.identity import csr as csrcheck
from mpguard.rotate import commands

OLD = b"old-password-0001"
NEW = b"new-password-0002"
HEAP = "96K"  # the harness loads every module up front (test_rotate.py says why)

STEP = """
FL.cut = IN['cut']
try:
    if IN['op'] == 'cmd':
        R.command(IN['t'])
    elif IN['op'] == 'boot':
        R.boot()
    else:
        I.install(IN['c'], [IN['ca']])
except Cut:
    pass
OUT([FL.hit, FL.writes])
"""

CHECK = """
st = R.status()['secrets'].get('mqtt')
v = R.get('mqtt')
OUT([st, v.decode() if v is not None else None, I.status()['pub']])
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    return compile_board(tmp_path_factory.mktemp("rotpc"))


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return HostCA(tmp_path_factory.mktemp("ca") / "proj")


def _run(board, code, **data):
    return board.run(code, heapsize=HEAP, rot=True, **data)


def _provision(board, ca):
    st, req = board.run("OUT(I.begin(IN['e']))\nOUT(I.csr(IN['c']))", e=b64u(os.urandom(32)),
                        c="challenge-0123456789").outputs
    csrcheck.check(unb64u(req), ueid=st["ueid"], challenge="challenge-0123456789",
                   public_key=unb64u(st["pending_pub"]))
    cert = ca.issue(unb64u(st["pending_pub"]), st["ueid"])
    return board.out("OUT(I.install(IN['c'], [IN['ca']]))", c=b64u(cert), ca=b64u(ca.ca.der))


class Scene:
    def __init__(self, mp, agent, ca, tmp_path):
        self.b = IdBoard(mp, agent, tmp_path / "flash.img")
        self.tmp = tmp_path
        st = _provision(self.b, ca)
        self.ueid, self.pub = st["ueid"], unb64u(st["pub"])
        self.op = keys.generate()
        doc = commands.anchor_doc([keys.public_bytes(keys.generate())], [keys.public_bytes(self.op)])
        import json

        _run(self.b, "f = open('/mpguard/anchors.json', 'w')\nf.write(IN['a'])\nf.close()\nOUT(1)",
             a=json.dumps(doc))
        self.seq = 0

    def cmd(self, op, epoch, value=None):
        self.seq += 1
        return commands.command(self.op, op=op, sub=self.ueid, seq=self.seq, name="mqtt",
                                epoch=epoch, value=value, board_key=self.pub, iat=self.seq)

    def save(self, name):
        p = self.tmp / name
        shutil.copyfile(self.b.path, p)
        return p

    def step(self, cut, **data):
        return _run(self.b, STEP, cut=cut, **data).out

    def check(self):
        return _run(self.b, CHECK).out

    def sweep(self, pristine, **data):
        """Run the step uncut (its write count), then cut at each write: the check after each
        cut (the points on a few boards of their own at once, cuts.py), then the check of the
        uncut run. The scene's board is left as the uncut run and its check left it."""
        shutil.copyfile(pristine, self.b.path)
        writes = self.step(None, **data)[1]
        assert writes >= 1
        done = self.check()
        boards = [self.b.twin(self.tmp / f"cut{i}.img") for i in range(cuts.workers())]

        def point(b, n):
            shutil.copyfile(pristine, b.path)
            hit, before = _run(b, STEP, cut=n, **data).out
            assert hit and before == n - 1
            return _run(b, CHECK).out

        return cuts.each(range(1, writes + 1), boards, point) + [done]


def _whole(st, value):
    # never a mix: the epoch names the value it came with
    assert st is not None and value is not None
    assert (st["epoch"], value) in ((1, OLD.decode()), (2, NEW.decode())), (st, value)


@pytest.mark.slow
def test_power_cut_at_every_write_of_set_stage_commit_revert(mp, agent, ca, tmp_path):
    s = Scene(mp, agent, ca, tmp_path)
    blank = s.save("blank.img")
    first = s.cmd("set", 1, OLD)
    seen = []
    for st, v, _ in s.sweep(blank, op="cmd", t=first):  # the first secret: the data key too
        assert (st, v) in ((None, None), ({"epoch": 1, "at": 1, "staged": None}, OLD.decode()))
        seen.append(v)
    assert None in seen and OLD.decode() in seen
    committed = s.save("committed.img")

    stage = s.cmd("stage", 2, NEW)
    for st, v, _ in s.sweep(committed, op="cmd", t=stage):
        _whole(st, v)
        assert st["epoch"] == 1 and st["staged"] in (None, 2)
    staged = s.save("staged.img")

    outcomes = set()
    commit = s.cmd("commit", 2)
    for st, v, _ in s.sweep(staged, op="cmd", t=commit):
        _whole(st, v)
        assert st["staged"] == (2 if st["epoch"] == 1 else None)  # old + staged, or new
        outcomes.add(st["epoch"])
    assert outcomes == {1, 2}

    revert = s.cmd("revert", 2)
    for st, v, _ in s.sweep(staged, op="cmd", t=revert):
        _whole(st, v)
        assert st["epoch"] == 1

    # the boot that reverts a staged value (its last allowed boot)
    shutil.copyfile(staged, s.b.path)
    for _ in range(commands.MAX_BOOTS - 1):
        _run(s.b, "R.boot()\nOUT(1)")
    last = s.save("last-boot.img")
    for st, v, _ in s.sweep(last, op="boot"):
        _whole(st, v)
        assert st["epoch"] == 1


@pytest.mark.slow
def test_power_cut_at_every_write_of_an_identity_rotation(mp, agent, ca, tmp_path):
    s = Scene(mp, agent, ca, tmp_path)
    _run(s.b, "R.command(IN['t'])\nOUT(1)", t=s.cmd("set", 1, OLD))
    old_pub = b64u(s.pub)
    st = _run(s.b, "OUT(I.begin(IN['e'], True))", e=b64u(os.urandom(32))).out
    cert = ca.issue(unb64u(st["pending_pub"]), st["ueid"])
    pending = s.save("pending.img")
    keys_seen = set()
    for rot, v, pub in s.sweep(pending, op="install", c=b64u(cert), ca=b64u(ca.ca.der)):
        _whole(rot, v)  # readable under whichever key the board has now
        assert pub in (old_pub, st["pending_pub"])
        keys_seen.add(pub)
    assert keys_seen == {old_pub, st["pending_pub"]}
