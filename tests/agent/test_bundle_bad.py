"""The named table of bad bundles (python-tuf style), refused by the board on MicroPython.

The board holds a confirmed app at sequence 5. Every bad bundle is offered to it in turn;
each must be refused with its exact reason, with no block written to flash and every file
(state, anchors, both app slots) byte for byte as before.
"""

from __future__ import annotations

import json
import struct
import time

import pytest
from agentboard import KIND, Board, app

from mpguard import jose
from mpguard.updates import bundle

SEQ = 5  # the board's confirmed sequence


def _manifest(signer, files, **kw):
    args = dict(app="demo", version="2.0", seq=SEQ + 1, targets=[KIND], issued_at=1_700_000_000)
    args.update(kw)
    return bundle.make_manifest(files, **args)


def _signed(key, m: dict, blobs: list[bytes], raw: bytes | None = None) -> bytes:
    payload = raw if raw is not None else json.dumps(m, separators=(",", ":")).encode()
    return bundle.assemble(jose.sign(payload, key), blobs)


def _edit(signer, files, edit, **kw) -> bytes:
    """A bundle whose (correctly signed) manifest was edited before signing."""
    m = _manifest(signer, files, **kw)
    edit(m)
    return _signed(signer.key, m, [d for _, d in files])


def _with_file(path: str, data: bytes = b"x = 1\n"):
    return lambda m: m["files"].append([path, len(data), __import__("hashlib").sha256(data).hexdigest()])


def bad_bundles(signer, other) -> list[tuple[str, bytes, str]]:
    files = app("2.0")
    blobs = [d for _, d in files]
    good = signer.bundle(files, seq=SEQ + 1)
    tok, payload = bundle.split(good)
    h64, p64, s64 = tok.split(b".")
    now = int(time.time())
    big = [("main.py", b"print(1)\n"), ("big.bin", bytes(600 * 1024))]
    flip_sig = h64 + b"." + p64 + b"." + s64[:10] + (b"A" if s64[10:11] != b"A" else b"B") + s64[11:]
    other_payload = jose.b64u_enc(json.dumps(dict(json.loads(jose.b64u_dec(p64)), seq=99),
                                             separators=(",", ":")).encode()).encode()
    alg_none = jose.b64u_enc(b'{"alg":"none","kid":"' + signer.kid.encode() + b'"}').encode()
    return [
        ("empty bundle", b"", "truncated"),
        ("header only, cut short", good[:5], "truncated"),
        ("bad magic", b"XXXX" + good[4:], "bad_header"),
        ("format version 2", good[:4] + b"\x02" + good[5:], "bad_header"),
        ("flags set", good[:5] + b"\x01" + good[6:], "bad_header"),
        ("manifest length zero", good[:6] + b"\x00\x00" + good[8:], "bad_header"),
        ("manifest length over the limit", good[:6] + struct.pack(">H", 5000) + good[8:],
         "too_large"),
        ("manifest cut short", good[: 8 + len(tok) // 2], "truncated"),
        ("manifest is not a JWS", bundle.assemble(b"not-a-jws", blobs), "jws_format"),
        ("signature by unknown key", other.bundle(files, seq=SEQ + 1), "unknown_key"),
        ("signature bit flipped", bundle.assemble(flip_sig, blobs), "bad_sig"),
        ("manifest changed after signing",
         bundle.assemble(h64 + b"." + other_payload + b"." + s64, blobs), "bad_sig"),
        ("alg none", bundle.assemble(alg_none + b"." + p64 + b"." + s64, blobs), "jws_alg"),
        ("manifest JSON is not an object",
         _signed(signer.key, {}, blobs, raw=b"[1,2,3]"), "bad_manifest"),
        ("manifest JSON broken", _signed(signer.key, {}, blobs, raw=b'{"fmt":1,'), "bad_manifest"),
        ("manifest format 2", _edit(signer, files, lambda m: m.update(fmt=2)), "bad_manifest"),
        ("sequence is a string", _edit(signer, files, lambda m: m.update(seq="6")),
         "bad_manifest"),
        ("file size negative",
         _edit(signer, files, lambda m: m["files"][0].__setitem__(1, -1)), "bad_manifest"),
        ("sha256 not hex",
         _edit(signer, files, lambda m: m["files"][0].__setitem__(2, "z" * 64)), "bad_manifest"),
        ("wrong target", signer.bundle(files, seq=SEQ + 1, targets=["esp32s3"]), "wrong_target"),
        ("sequence rolled back", signer.bundle(files, seq=SEQ - 2), "rollback"),
        ("sequence equal (replay)", signer.bundle(files, seq=SEQ), "replay"),
        ("expired", signer.bundle(files, seq=SEQ + 1, issued_at=now - 100, expires=now - 10),
         "expired"),
        ("minimum agent version too new",
         signer.bundle(files, seq=SEQ + 1, min_agent="9.0.0"), "agent_too_old"),
        ("absolute path", _edit(signer, files, _with_file("/main.py")), "bad_path"),
        ("path with ..", _edit(signer, files, _with_file("lib/../../guard/x.py")), "bad_path"),
        ("path with .", _edit(signer, files, _with_file("./x.py")), "bad_path"),
        ("hidden file", _edit(signer, files, _with_file(".secret")), "bad_path"),
        ("empty path part", _edit(signer, files, _with_file("lib//x.py")), "bad_path"),
        ("backslash in path", _edit(signer, files, _with_file("lib\\x.py")), "bad_path"),
        ("non-ASCII path", _edit(signer, files, _with_file("lib/é.py")), "bad_path"),
        ("path too deep", _edit(signer, files, _with_file("a/b/c/d/e.py")), "bad_path"),
        ("path too long", _edit(signer, files, _with_file("x" * 65)), "bad_path"),
        ("file and folder of one name", _edit(signer, files, _with_file("lib")), "bad_path"),
        ("shadows the agent package", _edit(signer, files, _with_file("guard/__init__.py")),
         "reserved_path"),
        ("shadows the agent in lib", _edit(signer, files, _with_file("lib/guard.mpy")),
         "reserved_path"),
        ("duplicate path", _edit(signer, files, _with_file("main.py")), "dup_path"),
        ("remove a shipped file",
         _edit(signer, files, lambda m: m.update(remove=["main.py"])), "dup_path"),
        ("remove an absolute path",
         _edit(signer, files, lambda m: m.update(remove=["/mpguard/state.json"])), "bad_path"),
        ("no files", _edit(signer, files, lambda m: m.update(files=[])), "too_many_files"),
        ("too many files", _edit(signer, files, lambda m: m.update(
            files=[[f"f{i}.py", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]
                   for i in range(33)])), "too_many_files"),
        ("file over the size limit", _edit(signer, files, lambda m: m["files"].append(
            ["huge.bin", 2 * 1024 * 1024, "0" * 64])), "too_large"),
        ("too large for free flash", signer.bundle(big, seq=SEQ + 1), "no_space"),
        ("extra bytes after the files", good + b"\x00", "bad_length"),
        ("payload cut short", good[:-1], "bad_length"),
    ]


def _prepare(fboard, signer):
    r = fboard.out("OUT(install(0))", [signer.bundle(app("1.0"), seq=SEQ)])
    assert r["status"] == "installed"
    assert "CONFIRMED True" in fboard.run("boot()").stdout


CHECK = """
for i in range(len(STREAMS)):
    gc.collect()
    before, w0 = snap(), FL.writes
    r = install(i)
    OUT([r, FL.writes - w0, snap() == before])  # one line per case: the harness keeps nothing
    r = before = None
"""


def test_bad_bundle_table(fboard, signer, other_signer):
    _prepare(fboard, signer)
    table = bad_bundles(signer, other_signer)
    assert len({name for name, _, _ in table}) == len(table)
    # 96K: besides the harness, this one process holds all the table's open bundle files
    results = fboard.run(CHECK, [b for _, b, _ in table], heapsize="96K").outputs
    wrong = []
    for (name, _, reason), (r, writes, same) in zip(table, results, strict=True):
        if r["status"] != "refused" or r["reason"] != reason or writes or not same:
            wrong.append(f"{name}: {r} writes={writes} unchanged={same}, want {reason}")
    assert not wrong, "\n".join(wrong)
    st = fboard.out("OUT(S.status())")
    assert st["seq"] == SEQ and st["active"] == "a" and st["trial"] is None


def test_expired_while_the_board_clock_is_unknown(fboard, signer):
    # Issued at T, expired at T+10; the board has confirmed a release issued at T+20 and
    # its clock is not set: the floor (T+20) alone proves the bundle expired.
    t = 1_700_000_000
    r = fboard.out("OUT(install(0))", [signer.bundle(app("1.0"), seq=1, issued_at=t + 20)])
    assert r["status"] == "installed"
    fboard.run("boot()")
    code = "I._now = lambda: None\nOUT([install(0), install(1)])"
    late = signer.bundle(app("2.0"), seq=2, issued_at=t, expires=t + 10)
    fine = signer.bundle(app("2.0"), seq=3, issued_at=t, expires=t + 30)
    expired, ok = fboard.out(code, [late, fine])
    assert expired == {"status": "refused", "reason": "expired"}
    assert ok["status"] == "installed"


def test_board_without_anchors_refuses(mp, agent_mpy, tmp_path, signer):
    b = Board(mp, agent_mpy, tmp_path / "flash.img")
    res = b.out("before = snap()\nr = install(0)\nOUT([r, snap() == before])",
                [signer.bundle(app("1.0"), seq=1)])
    assert res == [{"status": "refused", "reason": "no_anchors"}, True]


@pytest.mark.parametrize("where", ["first file", "last byte"])
def test_payload_hash_mismatch_discards_the_slot(fboard, signer, where):
    _prepare(fboard, signer)
    good = signer.bundle(app("2.0", extra=3000), seq=SEQ + 1)
    i = len(good) - 1 if where == "last byte" else len(good) - 3000 - 20
    bad = good[:i] + bytes([good[i] ^ 1]) + good[i + 1:]
    code = (
        "keep = lambda: [snap('/app/a'), snap('/mpguard')]\n"
        "before = keep()\n"
        "r = install(0)\n"
        "OUT([r, keep() == before, list(snap('/app/b')), S.status()])"
    )
    r, kept, slot_b, st = fboard.out(code, [bad])
    assert r["status"] == "refused" and r["reason"] == "bad_hash"
    assert kept and slot_b == []  # the running app and the state untouched; slot b discarded
    assert st["seq"] == SEQ and st["trial"] is None and st["last"]["result"] == "confirmed"
    # and a good bundle still installs afterwards
    assert fboard.out("OUT(install(0))", [good])["status"] == "installed"
