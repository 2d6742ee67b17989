"""What a board's guard.rotate accepts, made on the host: signed secret commands and
trust-anchor statements. Pure functions of their inputs (keys, numbers, bytes): no link.

A command is a JWS (RFC 7515, mpguard.jose) signed by an operator key, whose payload is
{"op", "sub", "seq", "iat", "name", "epoch"[, "jwe"]}:
  op     set | stage | commit | revert
  sub    the board's UEID (base64url): a command for another board is refused
  seq    above every command the board accepted (its status says the last): no replay
  iat    the host's time (s since 1970): the board reports it as the secret's age
  name   [a-z][a-z0-9_]{0,15}
  epoch  set/stage: the board's committed epoch + 1; commit/revert: the staged epoch
  jwe    set/stage: the value, a compact JWE (ECDH-ES, A128CBC-HS256) to the board's key
  try    (optional, ignored by the board) the host's attempt number when it sends a command
         again after the board ran out of heap: another signature, other numbers
An anchor statement is a list of JWS tokens, each by a distinct current anchor, over one
payload {"typ": "mpguard-anchors", "ver", "keys": {kid: b64u point}, "k", "ops"}.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from .. import jose, jwe, keys
from ..errors import CommandError
from ..files import b64u_enc

NAME = re.compile(r"[a-z][a-z0-9_]{0,15}\Z")
OPS = ("set", "stage", "commit", "revert")
MAX_NAMES = 6  # guard.rotate._MAX_NAMES
MAX_BOOTS = 3  # guard.rotate._MAX_BOOTS: a staged value reverts at this boot
TTL = 600  # guard.rotate._TTL / 1000: seconds a staged value waits for its commit
STATEMENT = "mpguard-anchors"


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise CommandError(f"secret name {name!r} not allowed: [a-z][a-z0-9_]{{0,15}}")
    return name


def command(operator_key: Any, *, op: str, sub: str, seq: int, name: str, epoch: int,
            value: bytes | None = None, board_key: Any = None, iat: int | None = None,
            extra: dict[str, Any] | None = None) -> str:
    """A signed command for guard.rotate.command (value encrypted to board_key)."""
    if op not in OPS:
        raise CommandError(f"unknown op {op!r}")
    body: dict[str, Any] = {"op": op, "sub": sub, "seq": seq, "name": name, "epoch": epoch,
                            "iat": int(time.time()) if iat is None else iat}
    if value is not None:
        body["jwe"] = jwe.encrypt(value, board_key)
    body.update(extra or {})
    return jose.sign(json.dumps(body, sort_keys=True, separators=(",", ":")).encode(), operator_key)


def anchor_doc(release_keys: list[bytes], operator_keys: list[bytes], *, ver: int = 0,
               k: int = 1) -> dict[str, Any]:
    """The JSON a board holds as /mpguard/anchors.json: release anchors, operator keys, the
    threshold of a statement, the set's version."""
    return {"v": 1, "ver": ver, "k": k,
            "keys": {keys.thumbprint(p): b64u_enc(p) for p in release_keys},
            "ops": {keys.thumbprint(p): b64u_enc(p) for p in operator_keys}}


def statement(doc: dict[str, Any], signers: list[Any]) -> list[str]:
    """A statement moving a board to `doc` (its ver, keys, k, ops), signed by each signer.

    It also names each release key's comb table ("tabs": kid -> base64url SHA-256,
    mpguard.anchortab), signed with the keys: a board that holds a named table (`anchors push`
    writes them first) keeps verifying with it; agents before tables ignore the member."""
    from .. import anchortab

    body = {"typ": STATEMENT, "ver": doc["ver"], "keys": doc["keys"], "k": doc["k"],
            "ops": doc.get("ops", {})}
    tabs = anchortab.with_tables({"keys": doc["keys"]})[0].get("tabs")
    if tabs:
        body["tabs"] = tabs
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return [jose.sign(payload, s) for s in signers]
