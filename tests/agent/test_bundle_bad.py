"""The named table of bad bundles (python-tuf style), refused by the board on MicroPython.

The board holds a confirmed app at sequence 5. Every bad bundle is offered to it in turn;
each must be refused with its exact reason, with no block written to flash and every file
(state, anchors, both app slots) byte for byte as before. Beside the table: refusals that
need a board in another state (no anchors, a fresh board, a set clock, a trial pending).
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


def _payload_with(p64: bytes, member: str) -> bytes:
    """The signed payload of p64 with one more member spliced in (raw JSON text)."""
    raw = jose.b64u_dec(p64)
    return raw[:-1] + b"," + member.encode() + b"}"


def _with_file(path: str, data: bytes = b"x = 1\n"):
    return lambda m: m["files"].append([path, len(data), __import__("hashlib").sha256(data).hexdigest()])


def _resigned_token(key, h64: bytes, p64: bytes) -> bytes:
    """A token over an arbitrary (already encoded) header and payload, signed correctly."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    inp = h64 + b"." + p64
    r, s = decode_dss_signature(key.sign(inp, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
    return inp + b"." + jose.b64u_enc(r.to_bytes(32, "big") + s.to_bytes(32, "big")).encode()


def _sig_65(tok: bytes) -> bytes:
    h, p, s64 = tok.split(b".")
    sig = jose.b64u_dec(s64)
    return h + b"." + p + b"." + jose.b64u_enc(sig[:32] + b"\0" + sig[32:]).encode()


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
        ("manifest JSON an empty list", _signed(signer.key, {}, blobs, raw=b"[]"), "bad_manifest"),
        ("manifest JSON a number", _signed(signer.key, {}, blobs, raw=b"7"), "bad_manifest"),
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
        # issue #14: each check alone, and the neighbours of each finding
        ("sequence rolled back by exactly one", signer.bundle(files, seq=SEQ - 1), "rollback"),
        ("minimum agent one minor above", signer.bundle(files, seq=SEQ + 1, min_agent="0.2.0"),
         "agent_too_old"),
        ("minimum agent one patch above", signer.bundle(files, seq=SEQ + 1, min_agent="0.1.1"),
         "agent_too_old"),
        ("sequence jumps over the maximum", signer.bundle(files, seq=SEQ + 2**20 + 1),
         "seq_jump"),
        ("sequence 2**53 - 1 (a typo)", _edit(signer, files, lambda m: m.update(seq=2**53 - 1)),
         "seq_jump"),
        ("jump present but not true",
         _edit(signer, files, lambda m: m.update(seq=SEQ + 2**20 + 1, jump=1)), "bad_manifest"),
        ("issue time 11 years ahead",
         signer.bundle(files, seq=SEQ + 1, issued_at=now + 11 * 366 * 86400), "future_iat"),
        ("one file over the per-file limit, the total within", _edit(
            signer, files, lambda m: m["files"].append(["big.bin", 1024 * 1024 + 1, "0" * 64])),
         "too_large"),
        ("files over the total limit, each within the per-file limit", _edit(
            signer, files, lambda m: m["files"].extend(
                [[f"big{i}.bin", 1024 * 1024, "0" * 64] for i in range(2)])), "too_large"),
        ("manifest one byte over the limit", good[:6] + struct.pack(">H", 4097) + good[8:],
         "too_large"),
        ("manifest nested 200 levels (signed)", _signed(
            signer.key, {}, blobs, raw=_payload_with(p64, '"zzz":' + "[" * 200 + "]" * 200)),
         "bad_manifest"),
        ("manifest nested 1200 levels (signed: more than the heap would parse)", _signed(
            signer.key, {}, blobs, raw=_payload_with(p64, '"zzz":' + "[" * 1200 + "]" * 1200)),
         "bad_manifest"),
        ("manifest member given twice (signed)",
         _signed(signer.key, {}, blobs, raw=_payload_with(p64, '"seq":99')), "bad_manifest"),
        ("manifest NaN (signed)",
         _signed(signer.key, {}, blobs, raw=_payload_with(p64, '"zzz":NaN')), "bad_manifest"),
        ("manifest fmt 1.0 (signed)", _edit(signer, files, lambda m: m.update(fmt=1.0)),
         "bad_manifest"),
        ("protected header nested 200 levels (unsigned)", bundle.assemble(
            jose.b64u_enc(b'{"alg":"ES256","x":' + b"[" * 200 + b"]" * 200 + b"}").encode()
            + b"." + p64 + b"." + s64, blobs), "jws_format"),
        ("protected header member given twice (signed)", bundle.assemble(_resigned_token(
            signer.key, jose.b64u_enc(b'{"alg":"ES256","kid":"x","kid":"' + signer.kid.encode()
                                      + b'"}').encode(), p64), blobs), "jws_format"),
        ("signature of 65 bytes r || 00 || s", bundle.assemble(_sig_65(tok), blobs), "bad_sig"),
        ("app name with control characters",
         _edit(signer, files, lambda m: m.update(app="x\x1b[2K\r VERIFIED")), "bad_manifest"),
        ("version with a newline", _edit(signer, files, lambda m: m.update(ver="2.0\n")),
         "bad_manifest"),
        ("sha256 in upper case",
         _edit(signer, files, lambda m: m["files"][0].__setitem__(2, m["files"][0][2].upper())),
         "bad_manifest"),
        ("agent version with a +", _edit(signer, files, lambda m: m.update(agent="+0.1.0")),
         "bad_manifest"),
        ("confirm after more than a day",
         _edit(signer, files, lambda m: m.update(confirm=86401)), "bad_manifest"),
        ("confirm after 2**31 ms", _edit(signer, files, lambda m: m.update(confirm=2**31 // 1000)),
         "bad_manifest"),
        ("shadows the sim's hardware package", _edit(signer, files, _with_file("_simhw/x.py")),
         "reserved_path"),
        ("file size true", _edit(signer, files, lambda m: m["files"][0].__setitem__(1, True)),
         "bad_manifest"),
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
    # 128K: besides the harness, this one process holds all the table's open bundle files (the
    # heap an install needs is tests/agent/test_update_limits.py's)
    results = fboard.run(CHECK, [b for _, b, _ in table], heapsize="128K").outputs
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


UNCHANGED = "before, w0 = snap(), FL.writes\nr = install(0)\nOUT([r, FL.writes - w0, snap() == before])"


def test_empty_anchor_set_is_no_anchors(mp, agent_mpy, tmp_path, signer):
    b = Board(mp, agent_mpy, tmp_path / "flash.img")
    b.run("provision(IN['anchors'])\nOUT(1)", anchors=json.dumps({"v": 1, "keys": {}}))
    r, writes, same = b.out(UNCHANGED, [signer.bundle(app("1.0"), seq=1)])
    assert r == {"status": "refused", "reason": "no_anchors"} and not writes and same


def test_malformed_anchors_are_no_anchors(mp, agent_mpy, tmp_path, signer):
    # a key that is not a 65-byte uncompressed point, a file too deep to parse, not JSON
    key = json.loads(signer.anchor_json)["keys"][signer.kid]
    for anchors in (json.dumps({"v": 1, "keys": {signer.kid: key[:-4]}}),
                    '{"v": 1, "keys": ' + "[" * 1000 + "]" * 1000 + "}", "not json"):
        b = Board(mp, agent_mpy, tmp_path / "flash.img")
        b.run("provision(IN['anchors'])\nOUT(1)", anchors=anchors)
        r, writes, same = b.out(UNCHANGED, [signer.bundle(app("1.0"), seq=1)])
        assert r == {"status": "refused", "reason": "no_anchors"} and not writes and same


def test_sequence_zero_on_a_fresh_board_is_a_bad_manifest(fboard, signer):
    # the board's highest accepted sequence is 0: seq 0 must not read as a replay
    bad = _edit(signer, app("1.0"), lambda m: m.update(seq=0), seq=1)
    r, writes, same = fboard.out(UNCHANGED, [bad])
    assert r["reason"] == "bad_manifest" and r["detail"] == "seq" and not writes and same


def test_expiry_against_a_set_clock(fboard, signer):
    t = 1_800_000_000
    code = f"I._now = lambda: {t}\n" + "OUT([install(0), install(1)])"
    at_exp = signer.bundle(app("1.0"), seq=1, issued_at=t - 100, expires=t)
    after = signer.bundle(app("1.0"), seq=1, issued_at=t - 100, expires=t + 1)
    refused, ok = fboard.out(code, [at_exp, after])
    assert refused == {"status": "refused", "reason": "expired"}  # at exactly exp: expired
    assert ok["status"] == "installed"


def test_expiry_floor_counts_even_when_the_clock_is_set(fboard, signer):
    # confirmed: a release issued at F. The clock says T < F (set, but behind): a bundle
    # that expired between T and F is refused all the same.
    t, f = 1_800_000_000, 1_800_001_000
    assert fboard.out("OUT(install(0))", [signer.bundle(app("1.0"), seq=1, issued_at=f)])[
        "status"] == "installed"
    fboard.run("boot()")
    code = f"I._now = lambda: {t}\n" + UNCHANGED
    r, writes, same = fboard.out(code, [signer.bundle(app("2.0"), seq=2, issued_at=t - 10,
                                                      expires=f - 1)])
    assert r == {"status": "refused", "reason": "expired"} and not writes and same


def test_expiry_floor_never_moves_back(fboard, signer):
    # releases issued at F, then at an older T: the floor stays F
    t, f = 1_800_000_000, 1_800_001_000
    for seq, iat in ((1, f), (2, t)):
        fboard.run("OUT(install(0))", [signer.bundle(app(f"{seq}.0"), seq=seq, issued_at=iat)])
        fboard.run("boot()")
    assert fboard.out("OUT(S.load()['floor'])") == f
    code = "I._now = lambda: None\n" + UNCHANGED
    r, _, same = fboard.out(code, [signer.bundle(app("3.0"), seq=3, issued_at=t, expires=f - 1)])
    assert r == {"status": "refused", "reason": "expired"} and same


def test_issue_time_ahead_is_judged_against_the_newest_time_known(fboard, signer):
    # clock not set: the newest time known is the floor (never before 2024-01-01)
    ten_years = 315_576_000
    code = "I._now = lambda: None\nOUT([install(0), install(1)])"
    ahead = signer.bundle(app("1.0"), seq=1, issued_at=1_704_067_200 + ten_years + 1)
    fine = signer.bundle(app("1.0"), seq=1, issued_at=1_704_067_200 + ten_years)
    refused, ok = fboard.out(code, [ahead, fine])
    assert refused == {"status": "refused", "reason": "future_iat"} and ok["status"] == "installed"
    # once a release issued 9 years on is confirmed, 10 years count from its issue time
    fboard.run("I._now = lambda: None\nboot()")
    later = signer.bundle(app("2.0"), seq=2, issued_at=1_704_067_200 + ten_years + 9 * 365 * 86400)
    r, _, _ = fboard.out("I._now = lambda: None\n" + UNCHANGED, [later])
    assert r["status"] == "installed", r


def test_a_deliberate_sequence_jump_says_so(fboard, signer):
    big = SEQ + 2**20 + 1
    r = fboard.out("OUT(install(0))", [signer.bundle(app("1.0"), seq=big, jump=True)])
    assert r["status"] == "installed" and r["seq"] == big
    r = fboard.out("OUT(install(0))", [signer.bundle(app("1.0"), seq=big + 2**20)])
    assert r["status"] == "installed"  # the jump is measured from the highest accepted


def test_the_announced_length_bounds_what_is_read(fboard, signer):
    # the stream has more bytes than the host announced: the board reads no further than the
    # announced length (the header says the manifest runs past it: truncated; the announced
    # length cuts the files: bad_length), never past it into the next bytes: 5 bytes of a
    # header with its flags set are truncated, not bad_header (the flags byte is never read).
    # The other way round, a stream that ends inside the manifest the announced length
    # covers, or inside a file: truncated, never a manifest or a file padded with what the
    # buffer held (a file that repeats itself would hash right).
    good = signer.bundle(app("1.0"), seq=1)
    mlen = int.from_bytes(good[6:8], "big")
    flagged = good[:5] + b"\x01" + good[6:]
    cut = good[: 8 + mlen // 2]
    twice = signer.bundle([("main.py", b"x = 1\n"), ("data.bin", bytes(range(256)) * 8)], seq=1)
    code = ("out = []\n"
            "for i, n in IN['offers']:\n"
            "    s = STREAMS[i]\n"
            "    s.seek(0)\n"
            "    before, w0 = snap(), FL.writes\n"
            "    r = I.install(s, n)\n"
            "    out.append([r, FL.writes - w0, snap() == before])\n"
            "OUT(out)")
    offers = [[0, 5], [0, 8 + mlen - 1], [0, len(good) - 1], [1, 5], [2, len(good)],
              [3, len(twice)]]
    res = fboard.out(code, [good, flagged, cut, twice[:-1024]], offers=offers)
    assert [r["reason"] for r, _, _ in res] == ["truncated", "truncated", "bad_length",
                                                "truncated", "truncated", "truncated"]
    assert all(not w and same for _, w, same in res[:-1])
    assert fboard.out("OUT([app_files('a'), S.status()['trial']])") == [None, None]


def test_no_space_is_refused_before_unreferenced_slots_go(fboard, signer):
    # 1.0 then 2.0 confirmed: slot a is no longer referred to (the next install frees it).
    # A release too big even with that room: refused with every file as it was, slot a too.
    for seq in (1, 2):
        fboard.run("OUT(install(0))", [signer.bundle(app(f"{seq}.0", extra=100_000), seq=seq)])
        fboard.run("boot()")
    big = signer.bundle([("main.py", b"print(1)\n"), ("big.bin", bytes(400 * 1024))], seq=3)
    r, writes, same = fboard.out(UNCHANGED, [big])
    assert r == {"status": "refused", "reason": "no_space"} and not writes and same
    assert fboard.out("OUT(app_files('a'))") is not None


def test_no_space_when_the_room_of_unreferenced_slots_was_overestimated(fboard, signer):
    # Slot a, no longer referred to, holds 32 tiny files: the room counted for it (a block per
    # file and one for its metadata, a lower bound for files of their own blocks) is far more
    # than removing it frees (littlefs keeps tiny files inside the folder's metadata). A
    # release that fits the estimate but not the room there is once slot a is gone is refused
    # no_space, checked again after the removal, not io_error half way through its files.
    tiny = [("main.py", b"import guard\nguard.confirm()\n")] + [
        (f"lib/t{i:02d}.py", b"x=1\n") for i in range(31)]
    for seq, files in ((1, tiny), (2, app("2.0"))):
        assert fboard.out("OUT(install(0))", [signer.bundle(files, seq=seq)])["status"] == "installed"
        fboard.run("boot()")
    free, counted = fboard.out("fs = os.statvfs('/')\nOUT([fs[4], guard.slots._du('/app/a', fs[0])])")
    assert counted > 40  # (what makes the estimate generous)
    # main.py and one data file; the manifest, its slack and the state: 8 blocks more
    blocks = free + counted - 10 - 8 - 1
    big = signer.bundle([("main.py", b"print(3)\n"), ("big.bin", bytes(blocks * 4096))], seq=3)
    code = "r = install(0)\nOUT([r, S.status(), app_files('b') is not None])"
    r, st, b_kept = fboard.out(code, [big])
    assert r == {"status": "refused", "reason": "no_space"}
    assert st["seq"] == 2 and st["trial"] is None and b_kept
    assert "APP demo 2.0" in fboard.run("boot()").stdout
