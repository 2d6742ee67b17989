"""The project side of rotation, without a board: the operator key `init` makes (encrypted,
in the anchors' "ops"), `secret init` for an older project, and `anchors rotate` making the
statements a board checks (checked here with the host twin of the board's checks)."""

from __future__ import annotations

import json

import pytest

from mpguard import anchortab, cli, jose, keys, project
from mpguard.errors import RotateError
from mpguard.rotate import anchors, commands, operator

PW = b"project rotation passphrase"


def test_init_makes_an_encrypted_operator_key_in_the_anchors(tmp_path):
    p = project.init(tmp_path / "p", passphrase=PW, targets=["sim"])
    e = operator.entry(p)
    pem = (p.root / e["path"]).read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert (p.root / e["path"]).stat().st_mode & 0o777 == 0o600
    assert list(p.board_anchors()["ops"]) == [e["kid"]]
    assert keys.thumbprint(operator.load(p, PW)) == e["kid"]
    assert "keys/*.pem" in (p.root / ".gitignore").read_text()


def test_secret_init_gives_an_older_project_its_operator_key(tmp_path, capsys):
    p = project.init(tmp_path / "p", passphrase=None, targets=["sim"], operator_key=False)
    assert "ops" not in p.board_anchors()
    with pytest.raises(RotateError) as e:
        operator.entry(p)
    assert e.value.reason == "no_operator"
    assert cli.main(["secret", "init", "--no-passphrase", "--project", str(p.root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    p = project.find(p.root)
    assert out["made"] and list(p.board_anchors()["ops"]) == [out["kid"]]
    # again: nothing new
    assert cli.main(["secret", "init", "--no-passphrase", "--project", str(p.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["made"] is False


def test_anchors_rotate_add_new_remove_old(tmp_path):
    p = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    before = p.board_anchors()
    old = next(iter(before["keys"]))
    res = anchors.rotate(p, add="new", remove=old, passphrase=None)
    p = project.find(p.root)
    doc = p.board_anchors()
    assert (res.ver, res.k, res.removed, res.signed_by) == (1, 1, [old], [old])
    assert list(doc["keys"]) == res.added and doc["ops"] == before["ops"] and doc["ver"] == 1
    assert p.key_entry()["kid"] == res.added[0] == res.signing_key  # signs releases now
    (st,) = anchors.statements(p)
    _, body = jose.verify(st["tokens"][0], {old: jose.b64u_dec(before["keys"][old])})
    # with each release key's comb table named (decisions/0020): signed with the keys
    assert json.loads(body) == {"typ": commands.STATEMENT, "ver": 1, "k": 1,
                                "keys": doc["keys"], "ops": doc["ops"],
                                "tabs": anchortab.with_tables(doc)[0]["tabs"]}
    # the next statement is signed by the new key; the log keeps both, in order
    res2 = anchors.rotate(p, add="new", remove=None, passphrase=None, threshold=2)
    assert res2.signed_by == res.added and [s["ver"] for s in anchors.statements(p)] == [1, 2]


def test_anchors_rotate_refusals_change_nothing(tmp_path):
    p = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    elsewhere = tmp_path / "elsewhere.pem"
    keys.save_public(keys.generate(), elsewhere)
    anchors.rotate(p, add=str(elsewhere), remove=None, passphrase=None, threshold=2)
    files = {f: f.read_bytes() for f in p.root.rglob("*") if f.is_file()}
    only = p.key_entry()["kid"]  # the key the project signs with
    cases = {
        "under threshold": (dict(add="new", remove=None), "threshold"),
        "a threshold of 0": (dict(add="new", remove=None, threshold=0), "bad_threshold"),
        "a threshold above the keys": (dict(add="new", remove=None, threshold=9),
                                       "bad_threshold"),
        "not a key": (dict(add=str(tmp_path / "nope.pem"), remove=None), "bad_anchor_key"),
        "not an anchor": (dict(add=None, remove="x" * 43), "bad_anchor_key"),
        "nothing asked": (dict(add=None, remove=None), "bad_anchor_key"),
        "the signing key removed, none added": (dict(add=None, remove=only), "bad_anchor_key"),
    }
    got = {}
    for name, (kw, _) in cases.items():
        with pytest.raises(RotateError) as e:
            anchors.rotate(project.find(p.root), passphrase=None, **kw)
        got[name] = e.value.reason
    assert got == {n: r for n, (_, r) in cases.items()}
    assert {f: f.read_bytes() for f in p.root.rglob("*") if f.is_file()} == files


def test_remove_every_key_is_refused(tmp_path, capsys):
    p = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    only = next(iter(p.anchors()))
    rc = cli.main(["anchors", "rotate", "--remove", only, "--project", str(p.root), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 2 and out["error"]["reason"] == "no_keys" and out["exit_code"] == 2
    assert not (p.root / anchors.STATEMENTS).exists()


def test_secret_values_never_on_the_command_line(capsys):
    # the value comes from a file only: no option takes it
    for cmd in (["secret", "set", "--help"], ["rotate", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(cmd)
        text = capsys.readouterr().out
        assert "--from-file" in text and "--value" not in text and "exit codes:" in text


def test_sign_with_files_are_read_even_when_not_needed(tmp_path):
    # `--sign-with /etc/passwd` (or a missing file, or another project's key) was never opened
    # when the project's own keys met the threshold: the command said done. Each is an error
    # now, with nothing written.
    from mpguard.errors import MpguardError

    p = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    files = {f: f.read_bytes() for f in p.root.rglob("*") if f.is_file()}
    stranger = tmp_path / "stranger.pem"
    keys.save_private(keys.generate(), stranger, None, allow_plaintext=True)
    notakey = tmp_path / "notakey.pem"
    notakey.write_text("root:x:0:0:root:/root:/bin/bash\n")
    for spec in (notakey, tmp_path / "missing.pem", stranger):
        with pytest.raises(MpguardError) as e:
            anchors.rotate(project.find(p.root), add="new", remove=None, passphrase=None,
                           sign_with=[str(spec)])
        assert e.value.exit_code == 2, (spec, e.value)
    assert {f: f.read_bytes() for f in p.root.rglob("*") if f.is_file()} == files


def test_add_new_in_an_unencrypted_project_says_no_passphrase(tmp_path, monkeypatch, capsys):
    from mpguard import cli

    monkeypatch.delenv("MPGUARD_PASSPHRASE", raising=False)
    p = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    files = {f: f.read_bytes() for f in p.root.rglob("*") if f.is_file()}
    rc = cli.main(["anchors", "rotate", "--add", "new", "--project", str(p.root), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 2 and "--no-passphrase" in out["error"]["hint"], out
    assert {f: f.read_bytes() for f in p.root.rglob("*") if f.is_file()} == files
