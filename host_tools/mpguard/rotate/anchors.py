"""Trust-anchor rotation: the project's release keys changed by a signed statement that the
boards accept (docs/rotate.md, "Release keys").

`mpguard anchors rotate --add NEWKEY [--remove OLDKEY]` (make):
 1. the project's anchors (anchors.json) are version `ver` (0 when never rotated) with
    threshold `k` (default 1); the new set is the old one plus NEWKEY minus OLDKEY, `ver`+1,
    the same operator keys. Refused before anything is written: a set with no key
    (no_keys), a NEWKEY or OLDKEY that is not usable (bad_anchor_key), fewer than `k`
    current keys to sign with (threshold), a project left without a release key it can sign
    with (bad_anchor_key)
 2. the statement: one JWS per signer over one payload {"typ": "mpguard-anchors", "ver",
    "keys", "k", "ops"} (mpguard.rotate.commands.statement), signed by `k` distinct current
    release keys (the project's own, and --sign-with for keys held elsewhere); checked here
    as a board checks it before it is kept
 3. written in this order: anchors-statements.json (every statement, in order: a board of
    any earlier version catches up), anchors.json, mpguard.json (a key made with `--add new`
    signs the project's releases from now on; a removed key is no longer used, its file is
    left where it is)
`mpguard anchors push --port P` (and `mpguard deploy`, before the bundle): the board's
anchors file says its version; every statement above it is sent in order
(`anchors.rotate`); the board checks each against its current anchors and keeps it (one
atomic write) or refuses it, changing nothing.
A board whose anchors are pinned in eFuse (`mpguard fuse harden`) keeps its anchors for
ever: it refuses every statement (anchors_pin; docs/decisions/0016-rotation.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import jose, keys
from ..errors import DeviceError, JoseError, KeyStoreError, ProjectError, RotateError
from ..files import b64u_dec, b64u_enc, write_json
from . import commands

if TYPE_CHECKING:
    from ..link import BoardLink

STATEMENTS = "anchors-statements.json"
BOARD_FILE = "/mpguard/anchors.json"


@dataclass
class Rotated:
    ver: int
    k: int
    keys: list[str]  # kids of the new set
    added: list[str]
    removed: list[str]
    signed_by: list[str]
    signing_key: str  # the kid the project's releases are signed with from now on
    made: list[str] = field(default_factory=list)  # key files made (--add new)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def statements(proj: Any) -> list[dict[str, Any]]:
    """Every statement the project made, oldest first: [{"ver", "tokens"}]."""
    path = proj.root / STATEMENTS
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
        out = [{"ver": int(s["ver"]), "tokens": list(s["tokens"])} for s in data["statements"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ProjectError(f"{path} is malformed: {e}") from None
    return out


def _public(spec: str, proj: Any) -> tuple[bytes, Path | None]:
    """A key given on the command line: a PEM file (public, or private: then the project may
    sign with it). Returns (65-byte point, path of a private key or None)."""
    path = Path(spec)
    if not path.is_absolute():
        path = Path.cwd() / path
    try:
        return keys.public_bytes(keys.load_public(path)), None
    except KeyStoreError:
        pass
    try:
        if keys.is_encrypted(path):
            return b"", path  # read with the passphrase later
        return keys.public_bytes(keys.load_private(path)), path
    except KeyStoreError as e:
        raise RotateError("bad_anchor_key", f"{spec}: {e}") from None


def _kid_of(spec: str, cur: dict[str, str], proj: Any) -> str:
    if spec in cur:
        return spec
    try:
        pub, _ = _public(spec, proj)
    except RotateError:
        raise RotateError("bad_anchor_key", f"{spec}: not a current key id or key file") from None
    kid = keys.thumbprint(pub) if pub else None
    if kid not in cur:
        raise RotateError("bad_anchor_key", f"{spec}: not one of the current anchors")
    return kid


def check_statement(doc: dict[str, Any], tokens: list[str], cur: dict[str, Any]) -> None:
    """The board's checks (guard.anchors.rotate) on the host, before a statement is kept."""
    if not tokens:
        raise RotateError("threshold")
    body, kids = None, []
    cur_keys = {k: b64u_dec(v) for k, v in cur["keys"].items()}
    for t in tokens:
        try:
            h, b = jose.verify(t, cur_keys)
        except JoseError as e:
            raise RotateError(e.reason) from None
        if (body is not None and b != body) or h["kid"] in kids:
            raise RotateError("bad_statement")
        body = b
        kids.append(h["kid"])
    if len(kids) < max(1, int(cur.get("k", 1))):
        raise RotateError("threshold", f"{len(kids)} of {cur.get('k', 1)} signatures")
    if not doc["keys"]:
        raise RotateError("no_keys")
    if doc["ver"] <= int(cur.get("ver", 0)):
        raise RotateError("anchors_rollback")


def rotate(proj: Any, *, add: str | None, remove: str | None, passphrase: bytes | None,
           threshold: int | None = None, sign_with: list[str] = ()) -> Rotated:  # type: ignore[assignment]
    """`mpguard anchors rotate`: make, check and record the next statement."""
    from .. import project

    if not add and not remove:
        raise RotateError("bad_anchor_key", "give --add and/or --remove")
    cur = proj.board_anchors()
    k_cur = int(cur.get("k", 1))
    new_keys = dict(cur["keys"])
    config = json.loads(json.dumps(proj.config))
    entries = config["release_keys"]
    made: list[str] = []
    new_key = None
    added: list[str] = []
    removed: list[str] = []
    if remove:
        kid = _kid_of(remove, cur["keys"], proj)
        del new_keys[kid]
        removed.append(kid)
        entries[:] = [e for e in entries if e["kid"] != kid]
    if add:
        if add == "new":
            new_key = keys.generate()
            n = 1
            while (proj.root / f"keys/release-{n}.pem").exists():
                n += 1
            rel = f"keys/release-{n}.pem"
            pub = keys.public_bytes(new_key)
            entry = {"kid": keys.thumbprint(pub), "path": rel, "encrypted": passphrase is not None}
            entries.insert(0, entry)
            made.append(rel)
        else:
            pub, priv_path = _public(add, proj)
            if priv_path is not None:
                if not pub:
                    pub = keys.public_bytes(keys.load_private(priv_path, passphrase))
                try:
                    rel = str(priv_path.resolve().relative_to(proj.root))
                except ValueError:
                    rel = str(priv_path.resolve())
                entries.insert(0, {"kid": keys.thumbprint(pub), "path": rel,
                                   "encrypted": keys.is_encrypted(priv_path)})
        kid = keys.thumbprint(pub)
        if kid in new_keys:
            raise RotateError("bad_anchor_key", f"{kid} is already a trust anchor")
        new_keys[kid] = b64u_enc(pub)
        added.append(kid)
    if not new_keys:
        raise RotateError("no_keys")
    if not entries or entries[0]["kid"] not in new_keys:
        raise RotateError("bad_anchor_key", "the project would hold no release key it can sign "
                          "with: --add new (or a private key file) with --remove")
    k = threshold if threshold is not None else min(k_cur, len(new_keys))
    if not 0 < k <= len(new_keys):
        raise RotateError("bad_threshold", f"--threshold {k} of {len(new_keys)} keys")
    # the signers: k_cur distinct current keys, the project's own first, then --sign-with
    signers: list[Any] = []
    for e in proj.config["release_keys"]:
        if e["kid"] in cur["keys"] and len(signers) < k_cur:
            signers.append(keys.load_private(proj.root / e["path"],
                                             passphrase if e.get("encrypted") else None))
    for spec in sign_with:  # every one is read and checked, also when it is not needed:
        p = Path(spec)      # a wrong file named is an error, never silently left aside
        key = keys.load_private(p, passphrase if keys.is_encrypted(p) else None)
        if keys.thumbprint(key) not in cur["keys"]:
            raise RotateError("bad_anchor_key", f"{spec} is not a current trust anchor")
        if len(signers) < k_cur and keys.thumbprint(key) not in [keys.thumbprint(s)
                                                                 for s in signers]:
            signers.append(key)
    if len(signers) < k_cur:
        raise RotateError("threshold", f"the statement needs {k_cur} signatures of current "
                          f"anchors, the project holds {len(signers)} (--sign-with PEM)")
    doc = {"v": 1, "ver": int(cur.get("ver", 0)) + 1, "k": k, "keys": new_keys,
           "ops": dict(cur.get("ops", {}))}
    tokens = commands.statement(doc, signers)
    check_statement(doc, tokens, cur)
    # write: the new key, the statement log, the anchors, the config (in that order)
    if new_key is not None:
        keys.save_private(new_key, proj.root / made[0], passphrase,
                          allow_plaintext=passphrase is None)
    log = statements(proj) + [{"ver": doc["ver"], "tokens": tokens}]
    write_json(proj.root / STATEMENTS, {"v": 1, "statements": log})
    write_json(proj.anchors_path, doc)
    write_json(proj.root / project.CONFIG_NAME, config)
    proj.config = config
    return Rotated(doc["ver"], k, sorted(new_keys), added, removed,
                   [keys.thumbprint(s) for s in signers], entries[0]["kid"], made)


# -- boards ------------------------------------------------------------------------------------


def board_doc(link: BoardLink) -> dict[str, Any] | None:
    """The board's anchors file (None when absent or unreadable)."""
    try:
        doc = json.loads(link.get(BOARD_FILE))
    except DeviceError as e:
        if e.exc_type != "OSError":  # absent (ENOENT); anything else is not an answer
            raise
        return None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


@dataclass
class Pushed:
    before: int | None  # the board's anchors version before (None: no anchors)
    after: int | None
    applied: list[int]  # versions of the statements the board accepted

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def push(link: BoardLink, proj: Any) -> Pushed:
    """Every statement above the board's anchors version, in order (a board refuses the
    first it cannot verify: DeviceRefused with its reason, and keeps what it had)."""
    link.soft_reset()  # a whole heap for reading the file, then for the signatures
    doc = board_doc(link)
    if doc is None:
        raise RotateError("no_operator_on_board", "the board has no trust anchors: "
                          "`mpguard agent install --port P` first")
    ver = int(doc.get("ver", 0) or 0)
    res = Pushed(ver, ver, [])
    from ..agent import status as agentstatus

    # an agent installed as .mpy verifies with the release keys' comb tables; as .py it has
    # no heap for them (decisions/0020)
    tables = agentstatus.compiled(link)
    for s in [s for s in statements(proj) if s["ver"] > ver]:
        if tables:
            _put_tables(link, s["tokens"][0])
        link.soft_reset()  # each statement's signatures get the whole heap
        link.call("anchors.rotate", [s["tokens"]], timeout=60)
        res.applied.append(s["ver"])
        res.after = s["ver"]
    return res


def _put_tables(link: BoardLink, token: str) -> None:
    """The comb tables a statement names, written before it (the board keeps a named table
    only when its file is there and matches; unused until the statement is applied)."""
    from .. import anchortab

    body = json.loads(b64u_dec(token.split(".")[1]))
    doc, files = anchortab.with_tables({"keys": body.get("keys") or {}})
    named = body.get("tabs") or {}
    made = False
    for kid, digest in sorted(doc.get("tabs", {}).items()):
        where, tab = anchortab.path(kid), files[anchortab.path(kid)]
        if named.get(kid) != digest or link.sha256(where) == hashlib.sha256(tab).hexdigest():
            continue
        if not made:
            link.mkdir(anchortab.TAB_DIR)
            made = True
        link.put(tab, where)


def pending(link: BoardLink, proj: Any) -> bool:
    """Whether the board's anchors are older than the project's statements."""
    doc = board_doc(link)
    log = statements(proj)
    return doc is not None and bool(log) and int(doc.get("ver", 0) or 0) < log[-1]["ver"]
