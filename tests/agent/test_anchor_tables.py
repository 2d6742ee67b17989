"""Anchor comb tables on the board (mpguard.anchortab, docs/decisions/0020-anchor-tables.md).

A release key listed in anchors.json "tabs" is verified with its table /mpguard/tab/<kid>
(the joint comb of guard.p256), only when the table's SHA-256 is the one the anchors name;
any other table, or none, is refused (bad_table), never used and never skipped.
"""

from __future__ import annotations

import json

import pytest
from agentboard import Board, app, manifest_hashes

from mpguard import anchortab

_SETUP = """
import os
provision(IN['anchors'])
try:
    os.mkdir('/mpguard/tab')
except OSError:
    pass
for p in IN['tabs']:
    with open(p, 'wb') as f:
        f.write(bytes.fromhex(IN['tabs'][p]))
OUT(1)
"""


def _board(mp, agent_mpy, tmp_path, anchors: str, tabs: dict[str, bytes]) -> Board:
    b = Board(mp, agent_mpy, tmp_path / "flash.img")
    b.run(_SETUP, anchors=anchors, tabs={p: t.hex() for p, t in tabs.items()})
    return b


def test_install_with_the_anchors_table(mp, agent_mpy, tmp_path, signer):
    assert list(signer.tabs) == [f"/mpguard/tab/{signer.kid}"]
    assert json.loads(signer.anchor_tab_json)["tabs"] == {
        signer.kid: anchortab.digest(signer.tabs[f"/mpguard/tab/{signer.kid}"])}
    b = _board(mp, agent_mpy, tmp_path, signer.anchor_tab_json, signer.tabs)
    v1 = app("1.0")
    r = b.out("OUT(install(0))", [signer.bundle(v1, seq=1)])
    assert r == {"status": "installed", "reason": None, "slot": "a", "seq": 1}
    assert b.out("OUT(app_files('a'))") == manifest_hashes(v1)


@pytest.mark.parametrize("how", ["flipped", "missing", "short"])
def test_a_table_other_than_the_anchors_name_is_refused(mp, agent_mpy, tmp_path, signer, how):
    (path, tab), = signer.tabs.items()
    if how == "flipped":
        tabs = {path: tab[:100] + bytes([tab[100] ^ 1]) + tab[101:]}
    elif how == "missing":
        tabs = {}
    else:
        tabs = {path: tab[:512]}
    b = _board(mp, agent_mpy, tmp_path, signer.anchor_tab_json, tabs)
    res = b.run("OUT(install(0))\nOUT(S.status())", [signer.bundle(app("1.0"), seq=1)])
    r, st = res.outputs
    assert r == {"status": "refused", "reason": "bad_table"}
    assert st["trial"] is None and st["last"] is None


def test_anchors_naming_another_keys_table_verify_nothing(mp, agent_mpy, tmp_path, signer,
                                                          other_signer):
    # anchors.json itself naming a wrong table (the other key's, digest and all): the
    # signature does not verify with it
    (path, _), = signer.tabs.items()
    (_, wrong), = other_signer.tabs.items()
    doc = json.loads(signer.anchor_json)
    doc["tabs"] = {signer.kid: anchortab.digest(wrong)}
    b = _board(mp, agent_mpy, tmp_path, json.dumps(doc), {path: wrong})
    r = b.out("OUT(install(0))", [signer.bundle(app("1.0"), seq=1)])
    assert r == {"status": "refused", "reason": "bad_sig"}


def test_anchors_without_tabs_verify_as_before(mp, agent_mpy, tmp_path, signer):
    # no "tabs": the generic path, whatever lies in /mpguard/tab
    (path, tab), = signer.tabs.items()
    b = _board(mp, agent_mpy, tmp_path, signer.anchor_json, {path: bytes(len(tab))})
    r = b.out("OUT(install(0))", [signer.bundle(app("1.0"), seq=1)])
    assert r["status"] == "installed"
