"""mpguard.bundle: building and explaining update bundles on the host."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from jwcrypto import jwk, jws

from mpguard import jose, keys
from mpguard.agent import package as agentpkg
from mpguard.errors import BundleError
from mpguard.updates import bundle, manifest

FILES = [("main.py", b"print('hi')\n"), ("lib/util.py", b"X = 1\n"), ("data/a.bin", bytes(300))]


@pytest.fixture(scope="module")
def key():
    return keys.generate()


@pytest.fixture(scope="module")
def anchors(key):
    pub = keys.public_bytes(key)
    return {jose.thumbprint(pub): pub}


def _build(key, files=FILES, **kw):
    args = dict(app="demo", version="1.0", seq=3, targets=["esp32"])
    args.update(kw)
    return bundle.build(files, key, **args)


def test_limits_agree_with_the_board():
    guard = agentpkg.agent_dir() / "guard"
    src = (guard / "bundle.py").read_text() + (guard / "manifest.py").read_text()

    def const(name):
        found = set(re.findall(rf"^_?{name} = const\((\d+)\)", src, re.M))
        assert len(found) == 1, (name, found)  # one value, wherever it is defined
        return int(found.pop())

    assert const("MAX_MANIFEST") == bundle.MAX_MANIFEST
    assert const("MAX_FILES") == bundle.MAX_FILES
    assert const("MAX_REMOVE") == bundle.MAX_REMOVE
    assert const("MAX_PATH") == bundle.MAX_PATH
    assert const("MAX_DEPTH") == bundle.MAX_DEPTH
    assert const("MAX_FILE") == bundle.MAX_FILE
    assert const("MAX_TOTAL") == bundle.MAX_TOTAL
    assert const("MAX_NAME") == bundle.MAX_NAME
    assert const("MAX_TARGETS") == manifest.MAX_TARGETS
    assert const("MAX_INT") == manifest.MAX_INT
    assert const("MAX_CONFIRM") == bundle.MAX_CONFIRM
    assert const("MAX_JUMP") == bundle.MAX_JUMP
    assert const("MAX_AHEAD") == bundle.MAX_AHEAD
    assert const("JSON_DEPTH") == manifest.JSON_DEPTH
    assert const("HDR_LEN") == bundle.HDR_LEN
    assert const("FORMAT") == bundle.FORMAT
    assert 'MAGIC = b"MPGB"' in src and bundle.MAGIC == b"MPGB"
    assert re.search(r'_SAFE = "([^"]+)"', src).group(1) == "".join(
        sorted(bundle.SAFE_CHARS, key="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
               "0123456789._-".index))
    assert str(bundle.RESERVED).replace("'", '"') in src


def test_layout_header_manifest_files(key):
    data = _build(key)
    assert data[:4] == b"MPGB" and data[4] == 1 and data[5] == 0
    mlen = int.from_bytes(data[6:8], "big")
    token, payload = bundle.split(data)
    assert len(token) == mlen and token.count(b".") == 2
    assert payload == b"".join(d for _, d in FILES)
    m = json.loads(jose.b64u_dec(token.split(b".")[1]))
    assert m["files"] == [[p, len(d), hashlib.sha256(d).hexdigest()] for p, d in FILES]
    assert m["fmt"] == 1 and m["seq"] == 3 and m["targets"] == ["esp32"]
    assert m["app"] == "demo" and m["ver"] == "1.0" and m["agent"] == "0.1.0"
    assert isinstance(m["iat"], int) and "exp" not in m and "remove" not in m


def test_manifest_verifies_with_a_standard_jose_library(key):
    token, _ = bundle.split(_build(key))
    pub = jwk.JWK.from_pyca(key.public_key())
    j = jws.JWS()
    j.deserialize(token.decode())
    j.verify(pub, alg="ES256")
    assert j.jose_header["kid"] == pub.thumbprint()
    assert json.loads(j.payload)["app"] == "demo"


def test_inspect_good_bundle(key, anchors):
    rep = bundle.inspect(_build(key, expires=2**40, confirm_after=30, remove=["old.py"]), anchors)
    assert rep["ok"] and rep["signature"] == "valid" and rep["problems"] == []
    assert [f["path"] for f in rep["files"]] == [p for p, _ in FILES]
    assert all(f["ok"] for f in rep["files"])
    assert rep["manifest"]["exp"] == 2**40 and rep["manifest"]["confirm"] == 30
    assert rep["manifest"]["remove"] == ["old.py"]


def test_inspect_without_anchors_does_not_claim_verified(key):
    rep = bundle.inspect(_build(key))
    assert not rep["ok"] and rep["signature"] == "not_checked"
    assert rep["manifest"]["app"] == "demo"


def test_inspect_reasons(key, anchors):
    good = _build(key)
    other = keys.generate()
    token, payload = bundle.split(good)
    h, p, s = token.split(b".")
    cases = {
        "unknown_key": _build(other),
        "bad_sig": bundle.assemble(h + b"." + p + b"." + s[:-2] + (b"AA" if s[-2:] != b"AA" else b"QA"),
                                   [payload]),
        "bad_hash": good[:-1] + bytes([good[-1] ^ 1]),
        "bad_length": good + b"x",
        "bad_header": b"XXXX" + good[4:],
        "truncated": good[:20],
    }
    # what the board refuses, release verify never calls verified (issue #14)
    board_refuses = {
        "header flags set": (good[:5] + b"\x01" + good[6:], "bad_header"),
        "format byte 2": (good[:4] + b"\x02" + good[5:], "bad_header"),
        "manifest over 4096 bytes": (good[:6] + (4097).to_bytes(2, "big") + good[8:] + bytes(5000),
                                     "too_large"),
        "a file over the size limit": (_signed_raw(key, _manifest_edit(
            token, lambda m: m["files"].append(["big.bin", bundle.MAX_FILE + 1, "0" * 64]))),
            "too_large"),
        "a manifest format it does not know": (_signed_raw(key, _manifest_edit(
            token, lambda m: m.update(fmt=2))), "bad_manifest"),
        "fmt 1.0": (_signed_raw(key, _manifest_edit(token, lambda m: m.update(fmt=1.0))),
                    "bad_manifest"),
        "an issue time 11 years ahead": (_signed_raw(key, _manifest_edit(
            token, lambda m: m.update(iat=int(__import__("time").time()) + 11 * 366 * 86400))),
            "future_iat"),
    }
    for name, (data, reason) in board_refuses.items():
        rep = bundle.inspect(data, anchors)
        assert not rep["ok"], name
        assert reason in [r for r, _ in rep["problems"]], (name, rep["problems"])
    for reason, data in cases.items():
        rep = bundle.inspect(data, anchors)
        assert not rep["ok"], reason
        assert reason in [r for r, _ in rep["problems"]], (reason, rep["problems"])


def _manifest_edit(token: bytes, edit) -> bytes:
    m = json.loads(jose.b64u_dec(token.split(b".")[1]))
    edit(m)
    return json.dumps(m, separators=(",", ":")).encode()


def _signed_raw(key, raw: bytes) -> bytes:
    """A bundle of FILES whose manifest is `raw`, signed by `key`."""
    return bundle.assemble(jose.sign(raw, key), [d for _, d in FILES])


def test_measurement_is_the_signing_input_digest(key, anchors):
    data = _build(key)
    token, _ = bundle.split(data)
    rep = bundle.inspect(data, anchors)
    h, p, _ = token.split(b".")
    assert rep["measurement"] == hashlib.sha256(h + b"." + p).hexdigest() == jose.measurement(token)
    assert rep["manifest_sha256"] == hashlib.sha256(token).hexdigest()


def test_build_refuses_a_confirm_time_over_a_day_and_sets_jump_only_when_asked(key):
    with pytest.raises(BundleError) as ei:
        _build(key, confirm_after=86401)
    assert ei.value.reason == "bad_manifest"
    token, _ = bundle.split(_build(key, confirm_after=86400))
    assert json.loads(jose.b64u_dec(token.split(b".")[1]))["confirm"] == 86400
    token, _ = bundle.split(_build(key, seq=2**30, jump=True))
    assert json.loads(jose.b64u_dec(token.split(b".")[1]))["jump"] is True
    token, _ = bundle.split(_build(key))
    assert "jump" not in json.loads(jose.b64u_dec(token.split(b".")[1]))


def test_expired_bundle_is_reported(key, anchors):
    rep = bundle.inspect(_build(key, issued_at=1000, expires=2000), anchors)
    assert not rep["ok"] and rep["problems"][0][0] == "expired"


@pytest.mark.parametrize(
    "path,reason",
    [("/abs.py", "bad_path"), ("a/../b.py", "bad_path"), (".hidden", "bad_path"),
     ("a//b.py", "bad_path"), ("a\\b.py", "bad_path"), ("sp ace.py", "bad_path"),
     ("a/b/c/d/e.py", "bad_path"), ("x" * 65, "bad_path"), ("", "bad_path"),
     ("guard/__init__.py", "reserved_path"), ("lib/guard/x.py", "reserved_path"),
     ("guard.py", "reserved_path"), ("lib/guard.mpy", "reserved_path")],
)
def test_build_refuses_bad_paths(key, path, reason):
    with pytest.raises(BundleError) as ei:
        _build(key, files=FILES + [(path, b"")])
    assert ei.value.reason == reason


def test_build_refuses_bad_sets(key):
    cases = [
        (dict(files=FILES + [("main.py", b"")]), "dup_path"),
        (dict(files=FILES + [("lib", b"")]), "bad_path"),
        (dict(files=[]), "too_many_files"),
        (dict(files=[(f"f{i}.py", b"") for i in range(33)]), "too_many_files"),
        (dict(files=[("f.bin", bytes(bundle.MAX_FILE + 1))]), "too_large"),
        (dict(files=[(f"lib/a_long_module_name_{i:02d}.py", b"") for i in range(32)]), "too_large"),
        (dict(remove=["main.py"]), "dup_path"),
        (dict(remove=["../x"]), "bad_path"),
        (dict(seq=0), "bad_manifest"),
        (dict(targets=[]), "bad_manifest"),
        (dict(app="x" * 33), "bad_manifest"),
        (dict(min_agent="one"), "bad_manifest"),
        (dict(issued_at=100, expires=50), "expired"),
    ]
    for kw, reason in cases:
        with pytest.raises(BundleError) as ei:
            _build(key, **kw)
        assert ei.value.reason == reason, (kw, ei.value)


def test_collect(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "x.py").write_bytes(b"x")
    (tmp_path / "main.py").write_bytes(b"m")
    (tmp_path / "a.py").write_bytes(b"a")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_bytes(b"no")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.pyc").write_bytes(b"no")
    assert bundle.collect(tmp_path) == [("main.py", b"m"), ("a.py", b"a"), ("lib/x.py", b"x")]
    (tmp_path / "main.py").unlink()
    with pytest.raises(BundleError, match="main.py"):
        bundle.collect(tmp_path)
    (tmp_path / "main.py").write_bytes(b"m")
    (tmp_path / "bad name.py").write_bytes(b"")
    with pytest.raises(BundleError) as ei:
        bundle.collect(tmp_path)
    assert ei.value.reason == "bad_path"
