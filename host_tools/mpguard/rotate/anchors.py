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
 3. written so that an interruption (a power cut, Ctrl-C) at any point converges: the new
    key file first (0600, never printed), then one journal (anchors-rotation.pending.json,
    atomic) naming everything the rotation writes: the statement, the new anchors, the
    config's release keys, the new key's file; then, each idempotently,
    anchors-statements.json (every statement, in order: a board of any earlier version
    catches up; a version already logged is not appended again), anchors.json, mpguard.json
    (a key made with `--add new` signs the project's releases from now on; a removed key is
    no longer used, its file is left where it is); then the journal is removed.
    Every reader that matters (`rotate` itself, `statements()`: `push`, `deploy`, `status`)
    finishes a pending journal first (`complete`); a rerun of `rotate` after an interruption
    finishes that rotation and says so, rather than making another.
    A log that does not follow anchors.json (two statements of one version, or a statement
    above anchors.json's version with no journal: left by an mpguard before the journal)
    is refused by `rotate` and `push` (anchors_log, `check_log`): nothing is sent
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
from ..errors import DeviceError, JoseError, KeyStoreError, NoAgent, ProjectError, RotateError
from ..files import atomic_write, b64u_dec, b64u_enc, write_json
from . import commands

if TYPE_CHECKING:
    from ..link import BoardLink

STATEMENTS = "anchors-statements.json"
PENDING = "anchors-rotation.pending.json"  # the journal of a rotation being written
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
    finished: bool = False  # an interrupted rotation finished (nothing new was made)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def statements(proj: Any) -> list[dict[str, Any]]:
    """Every statement the project made, oldest first: [{"ver", "tokens"}] (a rotation that
    was interrupted is finished first)."""
    complete(proj)
    return _read_log(proj)


def _read_log(proj: Any) -> list[dict[str, Any]]:
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
    if not add and not remove:
        raise RotateError("bad_anchor_key", "give --add and/or --remove")
    done = complete(proj)  # an interrupted rotation: finished, and nothing more this time
    if done is not None:
        return done
    check_log(proj)
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
    # write: the new key first (never lost), then the journal of everything else, then that
    res = Rotated(doc["ver"], k, sorted(new_keys), added, removed,
                  [keys.thumbprint(s) for s in signers], entries[0]["kid"], made)
    if new_key is not None:
        keys.save_private(new_key, proj.root / made[0], passphrase,
                          allow_plaintext=passphrase is None)
    write_json(proj.root / PENDING, {
        "v": 1, "ver": doc["ver"], "tokens": tokens, "anchors": doc,
        "release_keys": config["release_keys"], "made": made, "result": res.as_dict()})
    complete(proj)
    return res


def complete(proj: Any) -> Rotated | None:
    """Finish a rotation whose journal (PENDING) is still there: each write is done unless it
    is done already, then the journal is removed. Returns the rotation finished, or None when
    there was none. Refused (anchors_log) when the project's files are neither before nor
    after that rotation (nothing is written then)."""
    from .. import project

    path = proj.root / PENDING
    if not path.exists():
        return None
    try:
        j = json.loads(path.read_text())
        ver, tokens, doc = int(j["ver"]), list(j["tokens"]), dict(j["anchors"])
        release_keys, made = list(j["release_keys"]), list(j["made"])
        res = Rotated(**{**j["result"], "finished": True})
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ProjectError(f"{path} is malformed: {e}") from None
    for rel in made:  # the key the config will name was written before the journal
        if not (proj.root / rel).is_file():
            raise _log_error(f"{rel}, the new release key the pending rotation to version "
                             f"{ver} names, is missing", f"put {rel} back from its backup, "
                             f"or remove {PENDING} (the rotation is then not made)")
    log = _read_log(proj)
    logged = [s for s in log if s["ver"] == ver]
    if logged and [s["tokens"] for s in logged] != [tokens]:
        raise _log_error(f"{STATEMENTS} holds another statement of version {ver} than the "
                         f"pending rotation's ({PENDING})", _REPAIR)
    cfg_path = proj.root / project.CONFIG_NAME
    try:
        current = json.loads(proj.anchors_path.read_text())
        config = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise ProjectError(f"the project's files cannot be read: {e}") from None
    if current != doc:  # not written yet: the statement must follow the anchors it replaces
        try:
            check_statement(doc, tokens, proj.board_anchors())
        except RotateError as e:
            raise _log_error(f"the pending rotation to version {ver} ({PENDING}) does not "
                             f"follow anchors.json (version {current.get('ver', 0)}): "
                             f"{e.reason}", _REPAIR) from None
    if not logged:
        if log and log[-1]["ver"] >= ver:
            raise _log_error(f"{STATEMENTS} holds version {log[-1]['ver']}, the pending "
                             f"rotation makes version {ver}", _REPAIR)
        write_json(proj.root / STATEMENTS,
                   {"v": 1, "statements": log + [{"ver": ver, "tokens": tokens}]})
    if current != doc:
        write_json(proj.anchors_path, doc)
    if config.get("release_keys") != release_keys:
        config["release_keys"] = release_keys
        write_json(cfg_path, config)
    proj.config = config
    _unlink(path)
    return res


def _unlink(path: Path) -> None:
    path.unlink()


_REPAIR = ("see docs/rotate.md, \"After an interruption\"; nothing was written or sent")


def _log_error(detail: str, hint: str) -> RotateError:
    e = RotateError("anchors_log", detail)
    e.exit_code = 2  # the project's files, not a board, are the trouble
    e.hint = hint
    return e


def _payload(token: str) -> dict[str, Any]:
    body = json.loads(b64u_dec(token.split(".")[1]))
    return body if isinstance(body, dict) else {}


def _kept(log: list[dict[str, Any]], doc: dict[str, Any]) -> set[int] | None:
    """The log's entries on the chain that leads to anchors.json (doc): the statement of
    doc's version whose keys are doc's, the one below whose keys signed it, and so on down.
    None when a version on the way has no such statement, or more than one."""
    kept: set[int] = set()
    above: list[str] | None = None
    for v in sorted({s["ver"] for s in log}, reverse=True):
        if v > int(doc.get("ver", 0)):
            continue
        cands = []
        for i, s in enumerate(log):
            if s["ver"] != v:
                continue
            try:
                ks = _payload(s["tokens"][0]).get("keys") or {}
                if above is None:
                    ok = ks == doc["keys"]
                else:
                    pubs = {kid: b64u_dec(pub) for kid, pub in ks.items()}
                    ok = all(_verifies(t, pubs) for t in above)
            except (ValueError, IndexError, AttributeError, TypeError):
                ok = False
            if ok:
                cands.append(i)
        if len(cands) != 1:
            return None
        kept.add(cands[0])
        above = log[cands[0]]["tokens"]
    return kept


def _verifies(token: str, pubs: dict[str, bytes]) -> bool:
    try:
        jose.verify(token, pubs)
    except JoseError:
        return False
    return True


def check_log(proj: Any, log: list[dict[str, Any]] | None = None) -> None:
    """Refuse (anchors_log) a statement log that does not follow anchors.json: two statements
    of one version, versions out of order, a statement above anchors.json's version (with no
    journal: a rotation an earlier mpguard did not finish), or a last statement whose keys
    are not anchors.json's. Pushing such a log could make a board trust keys the project
    does not hold and refuse the project's own statements for ever."""
    log = _read_log(proj) if log is None else log
    if not log:
        return
    doc = proj.board_anchors()
    ver = int(doc.get("ver", 0) or 0)
    vers = [s["ver"] for s in log]
    if any(b <= a for a, b in zip(vers, vers[1:], strict=False)):
        what = f"{STATEMENTS} holds versions {vers}: two statements of one version"
    elif vers[-1] > ver:
        what = (f"{STATEMENTS} holds version {vers[-1]}, anchors.json is version {ver}: an "
                "`anchors rotate` that an earlier mpguard did not finish")
    elif vers[-1] == ver and _payload(log[-1]["tokens"][0]).get("keys") != doc["keys"]:
        what = f"the last statement of {STATEMENTS} does not make anchors.json's keys"
    else:
        return
    kept = _kept(log, doc)
    if kept is None:
        raise _log_error(f"{what}; which statements lead to anchors.json cannot be told",
                         _REPAIR)
    named = ", ".join(f"#{i + 1} (version {log[i]['ver']})"
                      for i in range(len(log)) if i not in kept)
    raise _log_error(f"{what}; statements not on the way to anchors.json: {named}",
                     "`mpguard anchors repair` takes them out of the log (a copy of it is "
                     "kept); then see docs/rotate.md, \"After an interruption\"")


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
    log = statements(proj)  # an interrupted rotation is finished first
    check_log(proj, log)  # never two statements of one version, nor one the project lacks
    link.soft_reset()  # a whole heap for reading the file, then for the signatures
    doc = board_doc(link)
    if doc is None:
        # no anchors file: no agent (or not a whole one); a statement cannot give one
        raise NoAgent(f"the board on {link.port} has no trust anchors (/mpguard/anchors.json): "
                      "a statement only updates anchors a board holds")
    ver = int(doc.get("ver", 0) or 0)
    same = [s for s in log if s["ver"] == ver]
    if same and _payload(same[0]["tokens"][0]).get("keys") != doc.get("keys"):
        e = RotateError("anchors_log", f"the board holds anchors version {ver} with other keys "
                        f"than the project's statement of version {ver}: it took a statement "
                        "the project no longer holds; nothing was sent")
        e.hint = ("install the project's anchors on it over USB: `mpguard agent install "
                  "--port P --force` (docs/rotate.md, \"After an interruption\")")
        raise e
    res = Pushed(ver, ver, [])
    from ..agent import status as agentstatus

    # an agent installed as .mpy verifies with the release keys' comb tables; as .py it has
    # no heap for them (decisions/0020)
    tables = agentstatus.compiled(link)
    for s in [s for s in log if s["ver"] > ver]:
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


@dataclass
class Repaired:
    removed: list[int]  # the versions of the statements taken out of the log
    backup: str | None  # the copy of the log as it was (None: nothing to do)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def repair(proj: Any) -> Repaired:
    """`mpguard anchors repair`: take out of the statement log every statement not on the way
    to anchors.json (`_kept`): left by an `anchors rotate` that an mpguard before the journal
    did not finish, or that was run again after such an interruption. The log is copied first
    (anchors-statements.json.N.bak). Refused (anchors_log) when the way cannot be told."""
    complete(proj)
    log = _read_log(proj)
    doc = proj.board_anchors()
    kept = _kept(log, doc) if log else set()
    if kept is None:
        raise _log_error("which statements of the log lead to anchors.json cannot be told",
                         _REPAIR)
    gone = [i for i in range(len(log)) if i not in kept]
    if not gone:
        return Repaired([], None)
    src = proj.root / STATEMENTS
    n = 1
    while (proj.root / f"{STATEMENTS}.{n}.bak").exists():
        n += 1
    backup = proj.root / f"{STATEMENTS}.{n}.bak"
    atomic_write(backup, src.read_bytes(), overwrite=False)
    write_json(src, {"v": 1, "statements": [s for i, s in enumerate(log) if i in kept]})
    return Repaired([log[i]["ver"] for i in gone], backup.name)
