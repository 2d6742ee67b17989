"""The named bad inputs of credential rotation (issue #11) on a provisioned virtual board with
the inventory in PostgreSQL: each refused with its exact reason and a typed error, and
nothing changed - the board's files (every file's SHA-256), the inventory (every row), the
project's keys, anchors and statements.

Through the CLI: what an operator can give it (a value too large or empty, a name not
allowed or reserved, a project whose operator key the board does not trust, a board the
inventory does not know, an anchor statement that removes every key or lacks signatures).
Through the same RPC the CLI uses (`secret.command`, `anchors.rotate` over the board link):
what the CLI never makes, so only a tampering host or a man in the middle could send
(tampered ciphertext and tag, a JWE for another board, a replayed command, an old epoch, a
command signed by another key, a statement under the board's threshold or without keys). A
value over the board's limit is refused by the host (secret_size) before anything is sent;
the board's own check of it is tests/agent/test_rotate.py's (a 64 KiB board runs out of heap
verifying such a command first: docs/decisions/0016-rotation.md)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from idhelp import snapshot
from rotcli import Cli, env_for, inventory_text

import mpguard.sim as simlib
from mpguard import jose, keys, project
from mpguard.errors import DeviceError, DeviceRefused
from mpguard.inventory import Inventory
from mpguard.link import BoardLink
from mpguard.rotate import commands, operator

pytestmark = pytest.mark.timeout(900)
PW = b"rotation test passphrase"


def files_of(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "inventory.db" not in p.name}


def _tamper(token: str, part: int, key) -> str:
    body = json.loads(jose.b64u_dec(token.split(".")[1]))
    p = body["jwe"].split(".")
    raw = bytearray(jose.b64u_dec(p[part]))
    raw[0] ^= 1
    p[part] = jose.b64u_enc(bytes(raw))
    body["jwe"] = ".".join(p)
    return jose.sign(json.dumps(body).encode(), key)


def test_named_bad_inputs_refused_nothing_changed(tmp_path, pg_server, monkeypatch):
    env = env_for(tmp_path)
    monkeypatch.setenv("MPGUARD_SIM_DIR", env["MPGUARD_SIM_DIR"])
    cli = Cli(env, tmp_path)
    db = pg_server.new_schema()
    cli("sim", "start", "--name", "b")
    try:
        cli("init", "proj", "--target", "sim")
        root = tmp_path / "proj"
        cli.cwd = root
        cli("provision", "--port", "sim:b", "--db", db)
        (tmp_path / "v.json").write_text('{"user": "board", "password": "bad-input-test"}')
        cli("secret", "set", "--port", "sim:b", "mqtt", "--from-file", str(tmp_path / "v.json"),
            "--db", db)

        # a copy of the project whose operator key the board never saw
        other = tmp_path / "other"
        shutil.copytree(root, other, ignore=shutil.ignore_patterns("inventory.db*"))
        for f in ("keys/operator-1.pem",):
            (other / f).unlink()
        cfg = json.loads((other / "mpguard.json").read_text())
        del cfg["operator_keys"]
        (other / "mpguard.json").write_text(json.dumps(cfg))
        anchors = json.loads((other / "anchors.json").read_text())
        del anchors["ops"]
        (other / "anchors.json").write_text(json.dumps(anchors))
        cli("secret", "init", "--project", str(other))
        # a copy whose statements need 2 of 2 keys, the project holding one of them
        two = tmp_path / "two"
        shutil.copytree(root, two, ignore=shutil.ignore_patterns("inventory.db*"))
        elsewhere = keys.generate()
        keys.save_public(elsewhere, tmp_path / "elsewhere.pem")
        cli("anchors", "rotate", "--add", str(tmp_path / "elsewhere.pem"), "--threshold", "2",
            "--project", str(two))

        # board-level inputs: made now, from what the operator holds
        proj = project.find(root)
        op_key = operator.load(proj, PW)
        with Inventory.open(db) as inv:
            (dev,) = inv.devices()
        ueid, pub = jose.b64u_enc(bytes.fromhex(dev.ueid)), bytes(dev.public_key)
        port = simlib.get("b").port
        with BoardLink(port) as link:
            link.soft_reset()
            st = link.call("secret.status")
        seq = st["seq"]

        def cmd(op, epoch, value=None, **kw):
            nonlocal seq
            seq += 1
            kw.setdefault("sub", ueid)
            kw.setdefault("board_key", pub)
            key = kw.pop("key", op_key)
            return commands.command(key, op=op, name="mqtt", epoch=epoch, value=value,
                                    seq=kw.pop("seq", seq), **kw)

        # a command again with a sequence number the board has seen (the last `secret set`'s)
        replayed = cmd("set", 2, b'{"user": "board", "password": "replay-me"}', seq=st["seq"])

        # -- the snapshot: nothing below may change it ---------------------------------------
        with BoardLink(port) as link:
            board_before = snapshot(link)
        inv_before = inventory_text(db)
        proj_before = {d.name: files_of(d) for d in (root, other, two)}

        big = tmp_path / "big.json"
        big.write_bytes(b"x" * 385)
        empty = tmp_path / "empty.json"
        empty.write_bytes(b"")
        lone = next(iter(project.find(root).anchors()))
        cli_cases = {
            # name: (argv, exit code, reason)
            "secret too large": (["secret", "set", "--port", "sim:b", "mqtt", "--from-file",
                                  str(big)], 2, "secret_size"),
            "empty value": (["secret", "set", "--port", "sim:b", "mqtt", "--from-file",
                             str(empty)], 2, "bad_secret_file"),
            "name not allowed": (["secret", "set", "--port", "sim:b", "MQTT/../x",
                                  "--from-file", str(tmp_path / "v.json")], 2, "bad_name"),
            "name reserved": (["secret", "set", "--port", "sim:b", "identity", "--from-file",
                               str(tmp_path / "v.json")], 2, "reserved_name"),
            "wrong operator key": (["rotate", "--port", "sim:b", "mqtt", "--from-file",
                                    str(tmp_path / "v.json"), "--project", str(other)], 4,
                                   "no_operator_on_board"),
            "board not in the inventory": (["rotate", "--port", "sim:b", "identity", "--db",
                                            pg_server.new_schema()], 4, "not_provisioned"),
            "statement removing every key": (["anchors", "rotate", "--remove", lone], 2,
                                             "no_keys"),
            "statement under threshold": (["anchors", "rotate", "--add", "new", "--project",
                                           str(two)], 2, "threshold"),
        }
        got = {}
        for i, (name, (argv, code, _)) in enumerate(cli_cases.items()):
            if argv[0] in ("secret", "rotate") and "--db" not in argv:
                argv = argv + ["--db", db]
            # the first and last run the mpguard executable; those between, the same main()
            # in this process (rotcli.Cli._here), without an interpreter's start each
            out = cli.json(*argv, code=code, here=0 < i < len(cli_cases) - 1)
            assert out["ok"] is False and out["exit_code"] == code, name
            assert "reason" in out["error"], (name, out)  # what came instead, if ever
            got[name] = out["error"]["reason"]
        assert got == {n: r for n, (_, _, r) in cli_cases.items()}

        other_board = keys.public_bytes(keys.generate())
        doc_two = project.find(two).board_anchors()
        no_keys = dict(doc_two, ver=doc_two["ver"] + 1, keys={})
        release = project.find(root).release_key(PW)
        board_cases = {
            "wrong operator key": ("secret.command", cmd("stage", 2, b"v", key=keys.generate()),
                                   "unknown_key"),
            "command signed by a release key": ("secret.command",
                                                cmd("stage", 2, b"v", key=release),
                                                "unknown_key"),
            "JWE for another board": ("secret.command", cmd("stage", 2, b"v",
                                                            board_key=other_board),
                                      "wrong_board"),
            "command for another board": ("secret.command", cmd("stage", 2, b"v",
                                                                sub="AiQKxAEAAA"),
                                          "wrong_board"),
            "tampered ciphertext": ("secret.command", _tamper(cmd("stage", 2, b"v"), 3, op_key),
                                    "bad_tag"),
            "tampered tag": ("secret.command", _tamper(cmd("stage", 2, b"v"), 4, op_key),
                             "bad_tag"),
            "replayed command": ("secret.command", replayed, "cmd_replay"),
            "old epoch": ("secret.command", cmd("stage", 1, b"v"), "old_epoch"),
            "name not allowed": ("secret.command", commands.command(
                op_key, op="stage", sub=ueid, seq=seq + 50, name="MQTT/x", epoch=1, value=b"v",
                board_key=pub), "bad_name"),
        }
        got = {}
        with BoardLink(port) as link:
            for name, (call, arg, _) in board_cases.items():
                try:
                    send(link, call, arg)
                    got[name] = "accepted"
                except DeviceRefused as e:
                    got[name] = e.reason
                except DeviceError as e:  # reported with the others, not raised alone
                    got[name] = f"{e.exc_type}"
        assert got == {n: r for n, (_, _, r) in board_cases.items()}

        # -- nothing changed ------------------------------------------------------------------
        with BoardLink(port) as link:
            assert snapshot(link) == board_before
        assert inventory_text(db) == inv_before
        assert {d.name: files_of(d) for d in (root, other, two)} == proj_before

        # -- statements: the board takes `two`'s anchors (2 keys, 2 signatures needed) --------
        cli("anchors", "push", "--port", "sim:b", "--project", str(two))
        with BoardLink(port) as link:
            board_before = snapshot(link)
        statement_cases = {
            "statement under threshold": ("anchors.rotate", commands.statement(
                dict(doc_two, ver=doc_two["ver"] + 1), [release]), "threshold"),
            "statement removing every key": ("anchors.rotate",
                                             commands.statement(no_keys, [release, elsewhere]),
                                             "no_keys"),
        }
        got = {}
        with BoardLink(port) as link:
            for name, (call, arg, _) in statement_cases.items():
                try:
                    send(link, call, arg)
                    got[name] = "accepted"
                except DeviceRefused as e:
                    got[name] = e.reason
        assert got == {n: r for n, (_, _, r) in statement_cases.items()}
        with BoardLink(port) as link:
            assert snapshot(link) == board_before
        assert inventory_text(db) == inv_before
    finally:
        cli("sim", "stop", "--all")


def send(link: BoardLink, call: str, arg) -> object:
    """One call as mpguard makes it: on a fresh heap with guard.hw and guard.rotate loaded
    first, again after a MemoryError (the board's peak is near its heap's end)."""
    for attempt in range(3):
        link.soft_reset()
        link.call("hw.board_kind")
        link.call("secret.status")
        try:
            return link.call(call, [arg], timeout=30)
        except DeviceRefused:
            raise
        except DeviceError as e:
            if e.exc_type != "MemoryError" or attempt == 2:
                raise
    return None
