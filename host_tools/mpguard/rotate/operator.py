"""The project's operator key: the P-256 key whose signature a board's guard.rotate requires
on every secret command (set, stage, commit, revert). It is not a release key: a leaked
operator key can change a board's secrets, never its code, and a release key cannot touch
secrets (docs/rotate.md, docs/decisions/0016-rotation.md).

Made by `mpguard init` (beside the release key and the device CA key, encrypted with the same
passphrase, mode 0600, never in git), or by `mpguard secret init` in a project made before
(Project.add_operator_key):

    keys/operator-1.pem                       the key (PKCS#8 PEM, encrypted unless opted out)
    mpguard.json "operator_keys"              [{"kid", "path", "encrypted"}]
    anchors.json "ops"                        {kid: base64url(65-byte public key)}: what boards
                                              trust, installed with the agent's anchors
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import keys
from ..errors import ProjectError, RotateError

PATH = "keys/operator-{n}.pem"


def make(root: Path, passphrase: bytes | None, n: int = 1) -> tuple[dict[str, Any], bytes]:
    """A new operator key in root/keys/operator-N.pem; (its config entry, its public point)."""
    rel = PATH.format(n=n)
    key = keys.generate()
    (Path(root) / "keys").mkdir(parents=True, exist_ok=True)
    keys.save_private(key, Path(root) / rel, passphrase, allow_plaintext=passphrase is None)
    return ({"kid": keys.thumbprint(key), "path": rel, "encrypted": passphrase is not None},
            keys.public_bytes(key))


def entry(proj: Any) -> dict[str, Any]:
    """The project's current operator key entry (RotateError no_operator if it has none)."""
    ops = proj.config.get("operator_keys") or []
    if not ops:
        raise RotateError("no_operator")
    return dict(ops[0])


def needs_passphrase(proj: Any) -> bool:
    return bool(entry(proj).get("encrypted"))


def load(proj: Any, passphrase: bytes | None) -> keys.PrivateKey:
    """The operator's private key (PassphraseError when the passphrase is missing or wrong)."""
    e = entry(proj)
    key = keys.load_private(proj.root / e["path"], passphrase if e.get("encrypted") else None)
    if keys.thumbprint(key) != e["kid"]:
        raise ProjectError(f"{proj.root / e['path']} is not the operator key {e['kid']}")
    if e["kid"] not in proj.board_anchors().get("ops", {}):
        raise ProjectError(f"the operator key {e['kid']} is not in {proj.anchors_path}")
    return key
