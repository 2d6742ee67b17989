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


# -- an interrupted `anchors rotate` (a power cut, Ctrl-C) converges ------------------------


class PowerCut(BaseException):  # like KeyboardInterrupt: not an Exception
    pass


class FakeBoard:
    """What `anchors push` talks to: the board's anchors file, and each statement checked
    as the board checks it (mpguard.rotate.anchors.check_statement) before it is kept."""

    def __init__(self, doc):
        self.doc = json.loads(json.dumps(doc))
        self.sent: list[int] = []

    def soft_reset(self):
        pass

    def exists(self, path):
        return False

    def get(self, path):
        assert path == anchors.BOARD_FILE
        return json.dumps(self.doc).encode()

    def call(self, name, args, timeout=None):
        assert name == "anchors.rotate"
        (tokens,) = args
        body = json.loads(jose.b64u_dec(tokens[0].split(".")[1]))
        self.sent.append(body["ver"])
        anchors.check_statement(body, tokens, self.doc)
        self.doc = {"v": 1, "ver": body["ver"], "k": body["k"], "keys": body["keys"],
                    "ops": body["ops"]}


def _cut_at(monkeypatch, n):
    """A power cut at the n-th write of the rotation's files (write_json, then the
    journal's removal), as the review did it: the write raises, nothing after it runs."""
    real, count = anchors.write_json, [0]

    def step():
        count[0] += 1
        if count[0] == n:
            raise PowerCut()

    def write(path, data, **kw):
        step()
        return real(path, data, **kw)

    monkeypatch.setattr(anchors, "write_json", write)
    monkeypatch.setattr(anchors, "_unlink", lambda p: (step(), p.unlink()), raising=False)
    return lambda: (monkeypatch.setattr(anchors, "write_json", real),
                    monkeypatch.setattr(anchors, "_unlink", lambda p: p.unlink(),
                                        raising=False))


def _shape(p):
    """A project's rotation state, key ids left out: what an interrupted rotation followed by
    a rerun must end on, as an uninterrupted one does."""
    p = project.find(p.root)
    doc = json.loads(p.anchors_path.read_text())
    log = anchors.statements(p)
    entry = p.key_entry()
    key = keys.load_private(p.root / entry["path"])  # the key the project signs with
    assert keys.thumbprint(key) == entry["kid"] and entry["kid"] in doc["keys"]
    assert (p.root / entry["path"]).stat().st_mode & 0o777 == 0o600
    body = json.loads(jose.b64u_dec(log[-1]["tokens"][0].split(".")[1]))
    assert (body["ver"], body["keys"], body["k"]) == (doc["ver"], doc["keys"], doc["k"])
    assert not (p.root / "anchors-rotation.pending.json").exists()
    config = {k: v for k, v in p.config.items() if k not in ("release_keys", "operator_keys")}
    assert sorted(doc["ops"]) == [e["kid"] for e in p.config["operator_keys"]]
    return (doc["ver"], doc["k"], len(doc["keys"]), len(doc["ops"]),
            [s["ver"] for s in log], len(p.config["release_keys"]), config)


def test_anchors_rotate_cut_at_each_write_converges(tmp_path, monkeypatch):
    """A cut at each write of `anchors rotate --add new --remove OLD`, then the same command
    again: the project ends as after one uninterrupted rotation (one statement of version 1,
    anchors.json and mpguard.json agree, the new key file kept), the next rotation follows,
    and a push sends each version once, which a board of version 0 takes."""
    ref = project.init(tmp_path / "ref", passphrase=None, targets=["sim"])
    old = ref.key_entry()["kid"]
    ref_made = anchors.rotate(ref, add="new", remove=old, passphrase=None).made
    ref_files = sorted(f.name for f in (ref.root / "keys").glob("release-*.pem"))
    want = _shape(ref)
    for n in range(1, 6):  # the journal, the log, anchors.json, mpguard.json, the removal
        p = project.init(tmp_path / f"p{n}", passphrase=None, targets=["sim"])
        old = p.key_entry()["kid"]
        board = FakeBoard(p.board_anchors())
        restore = _cut_at(monkeypatch, n)
        with pytest.raises(PowerCut):
            anchors.rotate(p, add="new", remove=old, passphrase=None)
        restore()
        made = sorted(f.name for f in (p.root / "keys").glob("release-*.pem"))
        p = project.find(p.root)
        again = anchors.rotate(p, add="new", remove=old, passphrase=None)
        assert _shape(p) == want, n
        p = project.find(p.root)
        if n > 1:  # the journal was written: the rerun finished that rotation, its key kept
            assert again.finished and again.made == ref_made, n
            assert made == ref_files and p.key_entry()["path"] == ref_made[0], n
        # the next rotation follows on, and a board takes every statement once, in order
        anchors.rotate(p, add="new", remove=None, passphrase=None)
        assert [s["ver"] for s in anchors.statements(p)] == [1, 2], n
        assert anchors.push(board, p).applied == [1, 2] and board.sent == [1, 2], n
        assert board.doc["keys"] == project.find(p.root).board_anchors()["keys"], n


def test_a_rerun_after_a_cut_finishes_that_rotation_and_says_so(tmp_path, monkeypatch, capsys):
    p = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    old = p.key_entry()["kid"]
    restore = _cut_at(monkeypatch, 3)  # anchors.json: the log has version 1, the anchors not
    with pytest.raises(PowerCut):
        anchors.rotate(p, add="new", remove=old, passphrase=None)
    restore()
    args = ["anchors", "rotate", "--add", "new", "--remove", old, "--no-passphrase",
            "--project", str(p.root)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "finished the interrupted rotation to version 1" in out, out
    p = project.find(p.root)
    assert [s["ver"] for s in anchors.statements(p)] == [1]
    assert list(p.board_anchors()["keys"]) == [p.key_entry()["kid"]] != [old]
    # status (and push, deploy) finish an interrupted rotation too
    restore = _cut_at(monkeypatch, 4)  # mpguard.json
    with pytest.raises(PowerCut):
        anchors.rotate(p, add="new", remove=None, passphrase=None)
    restore()
    assert cli.main(["anchors", "status", "--project", str(p.root), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["ver"] == 2 and st["statements"] == [1, 2] and "problem" not in st
    assert project.find(p.root).key_entry()["kid"] == st["signing_key"] in st["keys"]


def _orphan(p, ver, signer):
    """A statement of version `ver` to a key the project does not hold, signed by `signer`:
    what an mpguard before the journal left in the log when a rotation was cut."""
    other = keys.public_bytes(keys.generate())
    doc = {"v": 1, "ver": ver, "k": 1, "keys": {keys.thumbprint(other): jose.b64u_enc(other)},
           "ops": p.board_anchors().get("ops", {})}
    return {"ver": ver, "tokens": commands.statement(doc, [signer])}


def _log(p, entries):
    (p.root / anchors.STATEMENTS).write_text(json.dumps({"v": 1, "statements": entries}))


def test_a_log_with_two_statements_of_one_version_is_refused_and_repaired(tmp_path, capsys):
    """The state the bug left: [1 (orphan), 1 (the project's)]. Push sends nothing (the board
    would take the orphan and refuse the project for ever), rotate refuses, status says so;
    `anchors repair` takes the orphan out (a copy kept), then push sends version 1 once."""
    p = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    board = FakeBoard(p.board_anchors())
    first = p.release_key(None)
    anchors.rotate(p, add="new", remove=p.key_entry()["kid"], passphrase=None)
    real = anchors.statements(p)
    _log(p, [_orphan(p, 1, first), *real])
    for act in (lambda: anchors.push(board, p),
                lambda: anchors.rotate(p, add="new", remove=None, passphrase=None)):
        with pytest.raises(RotateError) as e:
            act()
        assert e.value.reason == "anchors_log" and "#1 (version 1)" in str(e.value)
        assert "anchors repair" in e.value.hint
    assert board.sent == [] and [s["ver"] for s in anchors.statements(p)] == [1, 1]
    assert cli.main(["anchors", "status", "--project", str(p.root), "--json"]) == 0
    assert "two statements of one version" in json.loads(capsys.readouterr().out)["problem"]
    assert cli.main(["anchors", "repair", "--project", str(p.root), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["removed"] == [1] and (p.root / rep["backup"]).exists()
    assert anchors.statements(p) == real
    assert anchors.push(board, p).applied == [1] and board.sent == [1]
    assert board.doc["keys"] == p.board_anchors()["keys"]


def test_a_statement_above_the_anchors_is_refused_and_repaired(tmp_path):
    """The other state the bug left: the log at version 1, anchors.json at 0, no journal.
    Push sends nothing; repair takes the statement out; the rotation is made again."""
    p = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    board = FakeBoard(p.board_anchors())
    _log(p, [_orphan(p, 1, p.release_key(None))])
    with pytest.raises(RotateError) as e:
        anchors.push(board, p)
    assert e.value.reason == "anchors_log" and board.sent == []
    with pytest.raises(RotateError):
        anchors.rotate(p, add="new", remove=p.key_entry()["kid"], passphrase=None)
    assert anchors.repair(p).removed == [1] and anchors.statements(p) == []
    anchors.rotate(p, add="new", remove=p.key_entry()["kid"], passphrase=None)
    assert anchors.push(board, p).applied == [1]
    assert board.doc["keys"] == project.find(p.root).board_anchors()["keys"]


def test_a_board_that_took_an_orphan_is_told_how_to_recover(tmp_path):
    p = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    board = FakeBoard(p.board_anchors())
    orphan = _orphan(p, 1, p.release_key(None))
    board.call("anchors.rotate", [orphan["tokens"]])
    board.sent = []
    anchors.rotate(p, add="new", remove=p.key_entry()["kid"], passphrase=None)
    with pytest.raises(RotateError) as e:
        anchors.push(board, p)
    assert e.value.reason == "anchors_log" and "--force" in e.value.hint and board.sent == []


def test_release_build_after_a_cut_rotation_says_how_to_finish_it(tmp_path, monkeypatch):
    # cut between anchors.json (old key removed) and mpguard.json (still signs with it):
    # the release key is no anchor; the error says that `anchors status` finishes the rotation
    from mpguard.errors import ProjectError

    p = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    old = p.key_entry()["kid"]
    restore = _cut_at(monkeypatch, 4)  # mpguard.json
    with pytest.raises(PowerCut):
        anchors.rotate(p, add="new", remove=old, passphrase=None)
    restore()
    with pytest.raises(ProjectError) as e:
        project.find(p.root).release_key(None)
    assert "anchors status" in (e.value.hint or ""), e.value
    anchors.statements(project.find(p.root))  # what `anchors status` does first
    assert project.find(p.root).release_key(None) is not None
