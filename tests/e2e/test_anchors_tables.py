"""Rotated trust anchors keep their comb tables (issue #13 item 3, decisions/0020): a statement
names each release key's table, `anchors push` writes the tables first, and the board keeps a
named table only when its file is there and matches. The board then verifies the new key's
bundles with it (a changed table is refused: it is in use). A statement whose table is not
on the board is kept without it: tests/agent/test_rotate.py."""

from __future__ import annotations

import hashlib
import json

import pytest
from test_deploy import GOOD, Releases

from mpguard import anchortab, keys
from mpguard.agent import install as agent_install
from mpguard.link import BoardLink
from mpguard.rotate import anchors
from mpguard.updates import deploy

pytestmark = pytest.mark.timeout(300)


def _rotate(rel: Releases) -> tuple[str, str]:
    old = rel.proj.config["release_keys"][0]["kid"]
    r = anchors.rotate(rel.proj, add="new", remove=old, passphrase=None)
    return old, r.added[0]


def test_a_pushed_statement_keeps_the_new_keys_table_in_use(sim_factory, tmp_path):
    rel = Releases(tmp_path)
    with BoardLink(sim_factory("at").port, connect_timeout=20) as link:
        rep = agent_install.install(link, rel.anchors(), force=True)
        assert rep.tables is True
        assert deploy.deploy(link, rel.build("1.0.0", GOOD), wait=20).outcome == "confirmed"
        old, new = _rotate(rel)
        pushed = anchors.push(link, rel.proj)
        assert pushed.applied == [1]
        doc = json.loads(link.get("/mpguard/anchors.json"))
        pub = keys.public_bytes(keys.load_private(rel.proj.root / rel.proj.config["release_keys"][0]["path"]))
        tab = anchortab.table(pub)
        assert sorted(doc["keys"]) == [new] and doc["tabs"] == {new: anchortab.digest(tab)}
        assert link.sha256(anchortab.path(new)) == hashlib.sha256(tab).hexdigest()
        res = deploy.deploy(link, rel.build("2.0.0", GOOD), wait=20)
        assert res.outcome == "confirmed", res
        # the table is what the board verifies with: a changed one is refused
        link.put(bytes(len(tab)), anchortab.path(new))
        res = deploy.deploy(link, rel.build("3.0.0", GOOD), wait=20)
        assert (res.outcome, res.reason) == ("refused", "bad_table"), res
        # pushing again puts the table back (the statement is applied already: only tables)
        link.put(tab, anchortab.path(new))
        assert deploy.deploy(link, rel.build("3.0.1", GOOD), wait=20).outcome == "confirmed"



def test_an_agent_installed_as_source_applies_a_statement(sim_factory, tmp_path):
    """A board whose agent is .py (its mpy version differs) compiles the statement's code on
    the board: it applies it within the 64 KiB heap (without tables, which need .mpy), and
    verifies the new key's bundles."""
    rel = Releases(tmp_path)
    with BoardLink(sim_factory("atpy").port, connect_timeout=20) as link:
        rep = agent_install.install(link, rel.anchors(), force=True, fmt="py")
        assert rep.format == "py" and rep.tables is False
        assert deploy.deploy(link, rel.build("1.0.0", GOOD), wait=20).outcome == "confirmed"
        old, new = _rotate(rel)
        pushed = anchors.push(link, rel.proj)
        assert pushed.applied == [1]
        doc = json.loads(link.get("/mpguard/anchors.json"))
        assert sorted(doc["keys"]) == [new] and doc["tabs"] == {}
        res = deploy.deploy(link, rel.build("2.0.0", GOOD), wait=20)
        assert res.outcome == "confirmed", res
