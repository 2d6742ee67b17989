"""A pending trial, the highest accepted sequence and the state file's migration (issue #14,
finding 3): a trial is never cancelled before its replacement is fully written and checked,
an older or equal sequence never replaces it, and a v1 state file keeps its sequence."""

from __future__ import annotations

import json

from agentboard import app, manifest_hashes

from mpguard import jose
from mpguard.updates import bundle

SNAP = "before, w0 = snap(), FL.writes\nr = install(0)\nOUT([r, FL.writes - w0, snap() == before])"


def _flip_payload(b: bytes, back: int = 5) -> bytes:
    i = len(b) - back
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1:]


def _pending(fboard, signer):
    """1.0 confirmed at seq 1 (slot a); 2.0 installed on trial at seq 2 (slot b)."""
    v1, v2 = app("1.0"), app("2.0", extra=3000)
    assert fboard.out("OUT(install(0))", [signer.bundle(v1, seq=1)])["status"] == "installed"
    assert "CONFIRMED True" in fboard.run("boot()").stdout
    b2 = signer.bundle(v2, seq=2)
    assert fboard.out("OUT(install(0))", [b2])["slot"] == "b"
    return v1, v2, b2


def test_older_or_equal_sequence_never_replaces_a_trial(fboard, signer):
    v1, v2, b2 = _pending(fboard, signer)
    # a captured genuine seq 1 (older than the trial), the trial's own bundle again, and the
    # trial's bundle with one payload byte flipped: refused before a byte is written
    cases = [signer.bundle(app("1.5"), seq=1), b2, _flip_payload(b2)]
    for b, reason in zip(cases, ["rollback", "replay", "replay"], strict=True):
        r, writes, same = fboard.out(SNAP, [b])
        assert r == {"status": "refused", "reason": reason} and not writes and same
    st = fboard.out("OUT(S.status())")
    assert st["trial"]["seq"] == 2 and st["hi"] == 2 and st["seq"] == 1
    assert "APP demo 2.0" in fboard.run("boot()").stdout


def test_a_trial_survives_a_failed_replacement(fboard, signer):
    v1, v2, b2 = _pending(fboard, signer)
    b3 = signer.bundle(app("3.0", extra=3000), seq=3)
    code = ("keep = lambda: [snap('/app/a'), snap('/app/b'), snap('/mpguard')]\n"
            "before = keep()\nr = install(0)\n"
            "OUT([r, keep() == before, app_files('c'), S.status()])")
    r, kept, slot_c, st = fboard.out(code, [_flip_payload(b3)])
    assert r["status"] == "refused" and r["reason"] == "bad_hash"
    assert kept and slot_c is None  # the trial, the confirmed app and the state as they were
    assert st["trial"]["seq"] == 2 and st["trial"]["slot"] == "b" and st["hi"] == 2
    # the genuine seq 3 replaces the trial only once it is complete: slot c, then b goes
    r = fboard.out("OUT(install(0))", [b3])
    assert r == {"status": "installed", "reason": None, "slot": "c", "seq": 3}
    files = fboard.out("OUT([app_files('a'), app_files('b'), app_files('c')])")
    assert files == [manifest_hashes(v1), None, manifest_hashes(app("3.0", extra=3000))]
    res = fboard.run("OUT(boot())\nOUT(S.status())")
    assert "APP demo 3.0" in res.stdout and res.outputs[1]["seq"] == 3
    # and the next release takes the one free slot, a (1.0 is no longer referred to)
    r = fboard.out("OUT(install(0))", [signer.bundle(app("4.0"), seq=4)])
    assert r["slot"] == "a"


def test_measurement_is_the_signing_input_and_the_manifest_is_kept(fboard, signer):
    b1 = signer.bundle(app("1.0"), seq=1)
    tok, _ = bundle.split(b1)
    fboard.run("OUT(install(0))", [b1])
    st = fboard.out("OUT(S.status())")
    assert st["trial"]["digest"] == jose.measurement(tok)
    # the verified token is stored as it was (re-assembled from the buffer it was decoded in)
    path = f"/mpguard/m-{jose.measurement(tok)[:16]}.jws"
    code = f"with open({path!r}, 'rb') as f:\n    OUT(f.read().decode())"
    assert fboard.out(code).encode() == tok
    fboard.run("boot()")
    # the high-S twin of the same signed manifest measures the same: a replay
    h, p, s64 = tok.split(b".")
    sig = jose.b64u_dec(s64)
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    twin = h + b"." + p + b"." + jose.b64u_enc(
        sig[:32] + (n - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")).encode()
    r, writes, same = fboard.out(SNAP, [bundle.assemble(twin, [d for _, d in app("1.0")])])
    assert r["reason"] == "replay" and not writes and same
    # manifests no state refers to are removed by the next install
    b2 = signer.bundle(app("2.0"), seq=2)
    fboard.run("OUT(install(0))", [b2])
    fboard.run("boot()")
    fboard.run("OUT(install(0))", [signer.bundle(app("3.0"), seq=3)])
    names = fboard.out("import os\nOUT(sorted(n for n in os.listdir('/mpguard') if n[:2] == 'm-'))")
    want = {f"m-{jose.measurement(bundle.split(b)[0])[:16]}.jws" for b in (b2,)}
    assert set(names) >= want and len(names) == 2  # 2.0 confirmed, 3.0 on trial


V1_STATE = {"v": 1, "active": "a", "seq": 5, "app": "demo", "ver": "1.0", "digest": "0" * 64,
            "floor": 1_700_000_000, "max_boots": 2, "trial": None,
            "last": {"result": "confirmed", "seq": 5, "app": "demo", "ver": "1.0"}}


def _v1_board(fboard, state):
    code = ("import os\nos.mkdir('/app')\nos.mkdir('/app/a')\n"
            "with open('/app/a/main.py', 'w') as f:\n    f.write(\"print('APP demo 1.0')\")\n"
            "with open('/mpguard/state.json', 'w') as f:\n    f.write(IN['st'])\nOUT(1)")
    fboard.run(code, st=json.dumps(state))


def test_a_v1_state_file_keeps_its_sequence(fboard, signer):
    _v1_board(fboard, V1_STATE)
    st = fboard.out("OUT(S.status())")
    assert st["seq"] == 5 and st["hi"] == 5 and st["active"] == "a"
    assert "APP demo 1.0" in fboard.run("boot()").stdout
    for seq, reason in ((4, "rollback"), (5, "replay")):
        r, writes, same = fboard.out(SNAP, [signer.bundle(app("x"), seq=seq)])
        assert r["reason"] == reason and not writes and same  # not even migrated on disk
    r = fboard.out("OUT(install(0))", [signer.bundle(app("2.0"), seq=6)])
    assert r["status"] == "installed" and r["slot"] == "b"
    st = json.loads(fboard.out("OUT(open('/mpguard/state.json').read())"))
    assert st["v"] == 2 and st["hi"] == 6 and st["seq"] == 5 and st["max_boots"] == 2
    assert st["floor"] == 1_700_000_000 and st["wdt"] == 120


def test_a_v1_state_with_a_pending_trial_counts_the_trial_as_accepted(fboard, signer):
    trial = {"slot": "b", "seq": 7, "app": "demo", "ver": "2.0", "digest": "1" * 64,
             "iat": 1_700_000_100, "confirm": 0, "boots": 1}
    _v1_board(fboard, dict(V1_STATE, trial=trial))
    assert fboard.out("OUT(S.status())")["hi"] == 7
    r = fboard.out("OUT(install(0))", [signer.bundle(app("3.0"), seq=7)])
    assert r == {"status": "refused", "reason": "replay"}


def test_a_damaged_state_is_bad_state_not_a_crash(fboard, signer):
    for text in ('{"v": 2}', '{"v": 3, "seq": 1}', "[" * 3000 + "]" * 3000,
                 json.dumps(dict(V1_STATE, v=2, hi="5", wdt=120)),
                 json.dumps(dict(V1_STATE, v=2, hi=5, wdt=120, active="../x")),
                 json.dumps(dict(V1_STATE, v=2, hi=5, wdt=120, trial={"slot": "b"})),
                 "[1]", "7", json.dumps(dict(V1_STATE, v=3, hi=5, wdt=120)),
                 json.dumps(dict(V1_STATE, v=2, hi=-1, wdt=120)),
                 json.dumps(dict(V1_STATE, v=2, hi=5, wdt=120, trial=5)),
                 json.dumps(dict(V1_STATE, v=2, hi=5, wdt=120, trial={
                     "slot": "b", "boots": 0, "app": "demo", "ver": "2.0", "digest": "1" * 64,
                     "iat": 1_700_000_100, "confirm": 0})),
                 json.dumps(dict(V1_STATE, v=2, hi=5, wdt=120, trial={
                     "slot": "b", "seq": 6, "app": "demo", "ver": "2.0", "digest": "1" * 64,
                     "iat": 1_700_000_100, "confirm": 0}))):
        code = ("with open('/mpguard/state.json', 'w') as f:\n    f.write(IN['t'])\n"
                "OUT([boot(), install(0)['reason'], S.status()])")
        # 88K: the 6 KB text of nested brackets sits in the harness's input beside the whole
        # agent (the harness's 80K had a few hundred bytes to spare, the test's temporary
        # path's length decided); the agent's own heap is tests/agent/test_update_heap.py's
        res = fboard.run(code, [signer.bundle(app("1.0"), seq=9)], heapsize="88K", t=text)
        assert res.out == [[None, False], "bad_state", {"state": "bad"}], text
        assert "guard: state bad_state" in res.stdout
