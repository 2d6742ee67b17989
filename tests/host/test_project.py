"""mpguard.project: init, discovery, keys at rest, trust anchors, the sequence record."""

from __future__ import annotations

import json

import pytest

from mpguard import jose, keys, project
from mpguard.errors import PassphraseError, ProjectError
from mpguard.updates import bundle, release

PW = b"correct horse battery staple"


def _app(d):
    d.mkdir()
    (d / "main.py").write_text("print('hello')\n")
    (d / "lib").mkdir()
    (d / "lib" / "util.py").write_text("X = 1\n")
    return d


def test_init_makes_a_complete_project(tmp_path):
    p = project.init(tmp_path / "proj", passphrase=PW, targets=["esp32", "sim"])
    root = tmp_path / "proj"
    cfg = json.loads((root / "mpguard.json").read_text())
    assert cfg["targets"] == ["esp32", "sim"] and cfg["mpguard"] == 1
    entry = cfg["release_keys"][0]
    assert entry["encrypted"] is True
    pem = (root / entry["path"]).read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in pem
    assert (root / entry["path"]).stat().st_mode & 0o077 == 0
    key = keys.load_private(root / entry["path"], PW)
    pub = keys.public_bytes(key)
    anchors = json.loads((root / "anchors.json").read_text())
    op = cfg["operator_keys"][0]  # the key that signs secret commands (docs/rotate.md)
    op_pub = keys.public_bytes(keys.load_private(root / op["path"], PW))
    assert anchors == {"v": 1, "keys": {jose.thumbprint(pub): jose.b64u_enc(pub)},
                       "ops": {op["kid"]: jose.b64u_enc(op_pub)}}
    assert entry["kid"] == jose.thumbprint(pub)
    assert p.anchors() == {entry["kid"]: pub}
    with pytest.raises(PassphraseError):
        keys.load_private(root / entry["path"], b"wrong")


def test_init_refuses_an_existing_project_and_changes_nothing(tmp_path):
    project.init(tmp_path, passphrase=PW)
    before = {f: f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()}
    with pytest.raises(ProjectError, match="already"):
        project.init(tmp_path, passphrase=PW)
    assert {f: f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()} == before


def test_init_without_passphrase_only_when_asked(tmp_path):
    with pytest.raises(ProjectError):
        project.init(tmp_path / "a", passphrase=b"")
    assert not (tmp_path / "a" / "mpguard.json").exists()
    p = project.init(tmp_path / "b", passphrase=None)
    assert p.key_entry()["encrypted"] is False
    assert b"ENCRYPTED" not in (tmp_path / "b" / "keys" / "release-1.pem").read_bytes()
    assert p.release_key(None) is not None


def test_init_refuses_bad_targets(tmp_path):
    with pytest.raises(ProjectError, match="target"):
        project.init(tmp_path, passphrase=PW, targets=["esp 32"])
    assert not (tmp_path / "mpguard.json").exists()


def test_find_upwards_and_explicit(tmp_path):
    project.init(tmp_path / "proj", passphrase=PW)
    deep = tmp_path / "proj" / "apps" / "x"
    deep.mkdir(parents=True)
    assert project.find(start=deep).root == (tmp_path / "proj").resolve()
    assert project.find(tmp_path / "proj").root == (tmp_path / "proj").resolve()
    with pytest.raises(ProjectError, match="no mpguard project"):
        project.find(start=tmp_path)
    with pytest.raises(ProjectError, match="not an mpguard project"):
        project.find(tmp_path)


def test_encrypted_key_needs_the_passphrase(tmp_path):
    p = project.init(tmp_path, passphrase=PW)
    with pytest.raises(ProjectError, match="encrypted"):
        p.release_key(None)
    with pytest.raises(PassphraseError):
        p.release_key(b"nope")


def test_sequence_is_monotonic_across_apps(tmp_path):
    p = project.init(tmp_path / "proj", passphrase=PW)
    a, b = _app(tmp_path / "a"), _app(tmp_path / "b")
    seqs = []
    for d, v in ((a, "1.0"), (a, "1.1"), (b, "0.1"), (a, "1.2")):
        r = release.build_release(p, d, v, tmp_path / f"{d.name}-{v}.bundle", passphrase=PW)
        seqs.append(r["seq"])
    assert seqs == [1, 2, 3, 4]
    rec = json.loads(p.releases_path.read_text())
    assert rec["last_seq"] == 4
    assert [h["seq"] for h in rec["apps"]["a"]] == [1, 2, 4]
    assert [h["version"] for h in rec["apps"]["b"]] == ["0.1"]
    # an explicit sequence must still go up; a refused one writes nothing
    with pytest.raises(ProjectError, match="not above"):
        release.build_release(p, a, "1.3", tmp_path / "x.bundle", passphrase=PW, seq=4)
    assert not (tmp_path / "x.bundle").exists()
    r = release.build_release(p, a, "1.3", tmp_path / "x.bundle", passphrase=PW, seq=10)
    assert r["seq"] == 10 and p.next_sequence("b") == 11


def test_release_verifies_against_the_project_anchors(tmp_path):
    p = project.init(tmp_path / "proj", passphrase=PW, targets=["sim"])
    out = tmp_path / "demo.bundle"
    r = release.build_release(p, _app(tmp_path / "demo"), "2.0", out, passphrase=PW,
                              confirm_after=60)
    assert r["app"] == "demo" and r["seq"] == 1 and r["targets"] == ["sim"]
    rep = bundle.inspect(out.read_bytes(), p.anchors())
    assert rep["ok"], rep["problems"]
    m = rep["manifest"]
    assert m["targets"] == ["sim"] and m["confirm"] == 60 and "remove" not in m
    assert rep["manifest_sha256"] == r["manifest_sha256"]
    assert rep["measurement"] == r["measurement"] == p.releases()["apps"]["demo"][-1]["measurement"]
    assert [f["path"] for f in rep["files"]] == ["main.py", "lib/util.py"]


def test_bad_app_folder_leaves_the_record_alone(tmp_path):
    p = project.init(tmp_path / "proj", passphrase=PW)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "main.py").write_text("")
    (bad / "guard.py").write_text("")
    with pytest.raises(bundle.BundleError) as ei:
        release.build_release(p, bad, "1.0", tmp_path / "o.bundle", passphrase=PW)
    assert ei.value.reason == "reserved_path"
    assert p.next_sequence("bad") == 1 and not (tmp_path / "o.bundle").exists()


def test_malformed_anchor_file(tmp_path):
    f = tmp_path / "anchors.json"
    f.write_text('{"v": 1, "keys": {"k": "AAAA"}}')
    with pytest.raises(ProjectError, match="65-byte"):
        project.load_anchor_file(f)
    f.write_text("[]")
    with pytest.raises(ProjectError, match="malformed"):
        project.load_anchor_file(f)


def test_concurrent_builds_get_distinct_sequences(tmp_path):
    """Several `mpguard release build` processes at once: every one gets its own sequence
    number and every release is in the record (they are chosen under a lock)."""
    import subprocess
    import sys

    root = tmp_path / "p"
    project.init(root, passphrase=None, targets=["sim"])
    app = _app(tmp_path / "demo")
    procs = [subprocess.Popen([sys.executable, "-m", "mpguard", "release", "build", str(app),
                               "--version", f"1.{i}", "-o", str(tmp_path / f"b{i}.bundle"),
                               "--project", str(root), "--confirm-after", "5", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [e for _, e in outs]
    seqs = sorted(json.loads(o)["seq"] for o, _ in outs)
    assert seqs == [1, 2, 3, 4, 5, 6]
    rec = json.loads((root / "releases.json").read_text())
    assert rec["last_seq"] == 6 and len(rec["apps"]["demo"]) == 6


def test_warns_when_nothing_confirms_the_update(tmp_path):
    p = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    silent = tmp_path / "silent"
    silent.mkdir()
    (silent / "main.py").write_text("print('never confirms')\n")
    r = release.build_release(p, silent, "1", tmp_path / "a.bundle", passphrase=None)
    assert r["confirm_after"] == 0 and "guard.confirm()" in r["warnings"][0]
    r = release.build_release(p, silent, "2", tmp_path / "b.bundle", passphrase=None,
                              confirm_after=30)
    assert r["warnings"] == [] and r["confirm_after"] == 30
    ok = _app(tmp_path / "ok")
    (ok / "main.py").write_text("import guard\nguard.confirm()\n")
    r = release.build_release(p, ok, "3", tmp_path / "c.bundle", passphrase=None)
    assert r["warnings"] == []  # the app calls guard.confirm()
    # the project's default healthy time applies when the command gives none
    cfg = json.loads((p.root / "mpguard.json").read_text())
    cfg["confirm_after"] = 45
    (p.root / "mpguard.json").write_text(json.dumps(cfg))
    r = release.build_release(project.load(p.root), silent, "4", tmp_path / "d.bundle",
                              passphrase=None)
    assert r["confirm_after"] == 45 and r["warnings"] == []
