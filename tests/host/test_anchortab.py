"""mpguard.anchortab: comb tables of the release anchors (docs/decisions/0020-anchor-tables.md)."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mpguard import anchortab, fuse, keys, project
from mpguard.agent import install as agent_install
from mpguard.files import b64u_dec


def _pub(d: int) -> bytes:
    return keys.public_bytes(ec.derive_private_key(d, ec.SECP256R1()))


def test_entries_are_the_multiples_cryptography_computes():
    q = _pub(0x1234567)
    tab = anchortab.table(q)
    assert len(tab) == anchortab.TAB_LEN == 1024
    # Q = d*G: entry c is (m_c * d)*G, whose y cryptography gives too
    for c, m in enumerate(anchortab.multipliers()):
        pn = ec.derive_private_key(m * 0x1234567 % anchortab.N, ec.SECP256R1()).public_key().public_numbers()
        assert tab[64 * c : 64 * c + 64] == pn.x.to_bytes(32, "big") + pn.y.to_bytes(32, "big")


def test_invalid_point_has_no_table():
    with pytest.raises(ValueError):
        anchortab.table(b"\x04" + bytes(64))


def test_with_tables_adds_digests_and_files_for_release_keys_only():
    a, b = _pub(11), _pub(12)
    doc = project.anchor_set([a, b])
    doc["ops"] = {"opkid": "x"}
    out, files = anchortab.with_tables(doc)
    assert out["keys"] == doc["keys"] and out["ops"] == doc["ops"] and "tabs" not in doc
    assert set(out["tabs"]) == set(doc["keys"])
    for kid, v in doc["keys"].items():
        t = files[f"/mpguard/tab/{kid}"]
        assert t == anchortab.table(b64u_dec(v))
        assert out["tabs"][kid] == anchortab.digest(t)
        assert b64u_dec(out["tabs"][kid]) == hashlib.sha256(t).digest()
    assert len(files) == 2
    # idempotent: a document that already has tabs gets them recomputed, not nested
    assert anchortab.with_tables(out) == (out, files)


def test_keys_that_are_not_points_or_plain_names_get_no_table():
    good = _pub(5)
    doc = {"v": 1, "keys": {"k1": "A" * 87, "../x": project.anchor_set([good])["keys"].popitem()[1]}}
    out, files = anchortab.with_tables(doc)
    assert out == doc and files == {}


def test_the_pinned_anchors_file_is_what_install_writes_with_the_tables():
    doc = project.anchor_set([_pub(7)])
    data = fuse.anchors_bytes(doc)
    files = agent_install.plan("py", "esp32", doc)
    assert files[agent_install.ANCHORS] == data
    assert "tabs" in json.loads(data)
    paths = list(files)
    (tab_path,) = [p for p in paths if p.startswith(anchortab.TAB_DIR + "/")]
    assert paths.index(tab_path) < paths.index(agent_install.ANCHORS)  # tables first
    assert anchortab.digest(files[tab_path]) == json.loads(data)["tabs"][tab_path.rsplit("/", 1)[1]]
