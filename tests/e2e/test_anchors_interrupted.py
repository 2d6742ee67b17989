"""An interrupted `mpguard anchors rotate` converges (review E, finding 1): a power cut or
Ctrl-C after the statement log is written but before anchors.json left the log at version
N+1 and the anchors at N; the same command run again appended a second, different N+1, and
a board pushed afterwards took the first (a key the project no longer holds) and refused the
real one (unknown_key) for ever. The cut is simulated by making the write of anchors.json
raise; everything else is real: a virtual board, `anchors.rotate`, `push` and `deploy`."""

from __future__ import annotations

import json

import pytest
from test_deploy import GOOD, Releases

from mpguard import project
from mpguard.agent import install as agent_install
from mpguard.errors import DeviceRefused
from mpguard.link import BoardLink
from mpguard.rotate import anchors
from mpguard.updates import deploy

pytestmark = pytest.mark.timeout(600)


class PowerCut(BaseException):
    pass


def _rotate_cut_at(monkeypatch, proj, old, at) -> None:
    """`anchors rotate --add new --remove OLD` with the power cut at the write of the file
    `at(path)` names (the writes before it done, none after)."""
    real = anchors.write_json

    def cut(path, data, **kw):
        if at(str(path)):
            raise PowerCut()
        return real(path, data, **kw)

    monkeypatch.setattr(anchors, "write_json", cut)
    with pytest.raises(PowerCut):
        anchors.rotate(proj, add="new", remove=old, passphrase=None)
    monkeypatch.setattr(anchors, "write_json", real)


def test_anchors_rotate_interrupted_after_the_log_converges(sim_factory, tmp_path, monkeypatch):
    rel = Releases(tmp_path)
    with BoardLink(sim_factory("an").port, connect_timeout=20) as link:
        agent_install.install(link, rel.anchors(), force=True)
        assert deploy.deploy(link, rel.build("1.0.0", GOOD), wait=20).outcome == "confirmed"
        old = rel.proj.config["release_keys"][0]["kid"]

        _rotate_cut_at(monkeypatch, rel.proj, old, lambda path: path == str(rel.proj.anchors_path))

        # the operator runs the same command again
        rel.proj = project.find(rel.proj.root)
        r = anchors.rotate(rel.proj, add="new", remove=old, passphrase=None)
        try:
            anchors.push(link, rel.proj)
        except DeviceRefused as e:
            pytest.fail(f"push refused after the rerun: {e.reason}")
        doc = json.loads(link.get("/mpguard/anchors.json"))
        assert sorted(doc["keys"]) == r.keys
        res = deploy.deploy(link, rel.build("2.0.0", GOOD), wait=20)
        assert res.outcome == "confirmed", (res.outcome, res.reason)
        log = anchors.statements(rel.proj)
        assert [s["ver"] for s in log] == sorted({s["ver"] for s in log}), \
            f"two statements with one version in the log: {[s['ver'] for s in log]}"


def test_a_push_after_a_cut_finishes_the_rotation_first(sim_factory, tmp_path, monkeypatch):
    """No rerun: the cut comes between anchors.json and mpguard.json, and the operator pushes.
    The push finishes the rotation (mpguard.json signs with the new key) and the board takes
    the one statement of version 1, then verifies the new key's bundle."""
    rel = Releases(tmp_path)
    with BoardLink(sim_factory("ap").port, connect_timeout=20) as link:
        agent_install.install(link, rel.anchors(), force=True)
        old = rel.proj.config["release_keys"][0]["kid"]
        _rotate_cut_at(monkeypatch, rel.proj, old, lambda path: path.endswith(project.CONFIG_NAME))
        rel.proj = project.find(rel.proj.root)
        assert anchors.push(link, rel.proj).applied == [1]
        assert rel.proj.key_entry()["kid"] != old
        doc = json.loads(link.get("/mpguard/anchors.json"))
        assert sorted(doc["keys"]) == [rel.proj.key_entry()["kid"]]
        res = deploy.deploy(link, rel.build("2.0.0", GOOD), wait=20)
        assert res.outcome == "confirmed", (res.outcome, res.reason)
