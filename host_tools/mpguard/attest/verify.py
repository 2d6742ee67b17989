"""Verify a board's Entity Attestation Token (RFC 9711, JWT form): the RATS verifier's first
half (RFC 9334 section 3); mpguard.attest.policy is the second (appraisal).

verify(token, nonce, issued, now) checks, in order; each refusal is an AttestError whose
`reason` names it (mpguard.reasons):
  1. JWS compact, ES256 only, no `crit`, size and header limits (RFC 7515 via
     mpguard.jose's checks)                                  jws_format jws_alg jws_crit too_large
  2. the signer: `kid` (RFC 7638 thumbprint) names a device of the inventory. A `kid` that
     is not a SHA-256 thumbprint's form (43 base64url characters) names none and is not
     looked up. If it does not, the *unverified* UEID claim of a well-formed `kid`'s token
     is read only to name the refusal: a known UEID means a wrong key, else an unknown
     device                                                 wrong_key unknown_device
  3. the ES256 signature with that device's public key (RFC 7515 5.2)               bad_sig
  4. the claims are RFC 9711's types (CLAIM_TYPES; integers below 2**63) and name mpguard's
     profile                                                                   bad_claims
  5. the UEID claim (4.2.1) is the device's                                   ueid_mismatch
  6. eat_nonce (4.1) is the nonce this attestation sent                          old_nonce
  7. freshness: the answer came within `window` seconds of sending the nonce, and an `iat`
     (4.3.1), where the board's clock gives one, is within the window of now        stale
The inventory's record of nonces (replayed) is checked by mpguard.attest.run, which owns
the inventory writes; `Verifier.signer` is the device whose key verified the signature (step
3), the only one a refusal may be recorded against. Public keys are parsed once per kid and cached (Store).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .. import files, jose
from ..errors import AttestError, InventoryError, JoseError
from .store import Device, Store

PROFILE = "tag:mpguard.invalid,2025:eat-profile:1"
CLAIM = "mpguard_posture"
MAX_TOKEN = 16384
WINDOW = 60.0  # seconds between sending the nonce and the token's arrival (and iat skew)
DBGSTAT = ("enabled", "disabled", "disabled-since-boot", "disabled-permanently",
           "disabled-fully-and-permanently")
MEASRES = ("success", "fail", "not-run", "absent")


# strict base64url text -> the length it decodes to, for texts that decode: a board's ueid,
# hwmodel and measurement bodies come back unchanged token after token (about a third of the
# claim checks' time). The answer is a function of the exact text alone; only exact
# str (no subclass with its own hash or equality), only short texts, bounded (the oldest
# entry goes first); a text that does not decode is never remembered.
_B64U_LEN: dict[str, int] = {}
B64U_CACHE = 4096
B64U_CACHED_CHARS = 1024


def _b64u(v: Any, lo: int = 1, hi: int = 4096) -> bool:
    if type(v) is str:
        n = _B64U_LEN.get(v)
        if n is not None:
            return lo <= n <= hi
    elif not isinstance(v, str):
        return False
    try:
        n = len(files.b64u_dec(v))
    except ValueError:
        return False
    if type(v) is str and len(v) <= B64U_CACHED_CHARS:
        files.remember(_B64U_LEN, v, n, B64U_CACHE)
    return lo <= n <= hi


UINT_END = 1 << 63  # integer claims are below 2**63 (CBOR's and a database's 64 bits)
# RFC 7638 thumbprint of a P-256 key: SHA-256, base64url without padding, 43 characters whose
# last one carries 2 zero bits (the canonical encoding of 32 bytes)
_KID = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")


def kid_form(kid: Any) -> bool:
    """`kid` has the form of an RFC 7638 SHA-256 thumbprint (says nothing of whose)."""
    return type(kid) is str and len(kid) == 43 and _KID.fullmatch(kid) is not None


def _uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < UINT_END


def _swversion(v: Any) -> bool:
    return (isinstance(v, list) and 1 <= len(v) <= 2 and isinstance(v[0], str)
            and (len(v) == 1 or _uint(v[1])))


# The checks below are loops, not all(...) over generators: they run for every token at
# fleet rate, and a generator costs more than the checks it makes.
def _measurements(v: Any) -> bool:
    if not isinstance(v, list) or not v:
        return False
    for m in v:
        if not (isinstance(m, list) and len(m) == 2 and _uint(m[0]) and _b64u(m[1])):
            return False
    return True


def _measres(v: Any) -> bool:
    if not isinstance(v, list) or not v:
        return False
    for g in v:
        if not (isinstance(g, list) and len(g) == 2 and isinstance(g[0], str)
                and isinstance(g[1], list)):
            return False
        for r in g[1]:
            if not (isinstance(r, list) and len(r) == 2 and isinstance(r[0], str)
                    and r[1] in MEASRES):
                return False
    return True


def _submods(v: Any) -> bool:
    if not isinstance(v, dict):
        return False
    for k, s in v.items():
        if not (isinstance(k, str) and isinstance(s, dict)):
            return False
    return True


def _facts(v: Any) -> bool:
    if not isinstance(v, dict):
        return False
    for f in v.values():
        if not isinstance(f, dict):
            return False
        s = f.get("s")
        if s not in ("ok", "unsupported", "unreadable") or ("v" in f) != (s == "ok"):
            return False
    return True


# RFC 9711's claims in their JSON (JWT) form: name -> (required, check). Section numbers in
# the comments; `mpguard_posture` is mpguard's private claim (docs/attest.md).
CLAIM_TYPES: dict[str, tuple[bool, Any]] = {
    "eat_nonce": (True, lambda v: isinstance(v, str) and 10 <= len(v) <= 74),  # 4.1
    "ueid": (True, lambda v: _b64u(v, 7, 33)),  # 4.2.1
    "oemid": (False, lambda v: _uint(v) or _b64u(v, 3, 16)),  # 4.2.3
    "hwmodel": (False, lambda v: _b64u(v, 1, 32)),  # 4.2.4
    "swname": (False, lambda v: isinstance(v, str)),  # 4.2.6
    "swversion": (False, _swversion),  # 4.2.7
    "oemboot": (False, lambda v: isinstance(v, bool)),  # 4.2.8
    "dbgstat": (False, lambda v: v in DBGSTAT),  # 4.2.9
    "uptime": (False, _uint),  # 4.2.11
    "bootcount": (False, _uint),  # 4.2.12
    "measurements": (False, _measurements),  # 4.2.16
    "measres": (True, _measres),  # 4.2.17
    "submods": (False, _submods),  # 4.2.18
    "iat": (False, _uint),  # 4.3.1
    "eat_profile": (True, lambda v: v == PROFILE),  # 4.3.2
    CLAIM: (True, _facts),
}


_ABSENT = object()
# The claims set's parser: msgspec's, about twice as fast as the json module's on a token's
# 2.1 KB (docs/decisions/0032). It parses RFC 8259 JSON only: NaN, Infinity, numbers past a
# double, lone surrogates and a byte-order mark are refused (the json module takes them);
# integers of any size stay exact integers; a repeated name keeps its last value, as json's.
_CLAIMS_JSON = msgspec.json.Decoder()


def check_claims(c: Any) -> None:
    """Step 4: every claim of CLAIM_TYPES present where required and of its type."""
    if not isinstance(c, dict):
        raise AttestError("bad_claims", "not a JSON object")
    for name, (required, ok) in CLAIM_TYPES.items():
        v = c.get(name, _ABSENT)
        if v is _ABSENT:
            if required:
                raise AttestError("bad_claims", f"{name} missing")
        elif not ok(v):
            raise AttestError("bad_claims", name)


@dataclass
class Evidence:
    """A verified token: who signed it and what it claims."""

    token: str
    kid: str
    device: Device
    claims: dict[str, Any]
    received: float
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def posture(self) -> dict[str, Any]:
        return dict(self.claims[CLAIM])


class _Keys(dict):
    """kid -> public key, from the store as jose.verify asks for a kid; `device` is the last
    device it answered with (one look-up per token)."""

    def __init__(self, store: Store):
        super().__init__()
        self.store = store
        self.device: Device | None = None

    def __contains__(self, kid: object) -> bool:
        return kid_form(kid) and self.store.device_by_kid(kid) is not None  # type: ignore[arg-type]

    def __getitem__(self, kid: str) -> Any:
        # a kid of another form names no key: never asked of the inventory (a lone surrogate
        # or a NUL is text its database driver cannot even encode)
        dev = self.store.device_by_kid(kid) if kid_form(kid) else None
        if dev is None:
            raise KeyError(kid)
        self.device = dev
        return dev.public_key


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    # Only to name a refusal (step 2); never trusted.
    try:
        h, p, _ = token.split(".")
        hdr, body = json.loads(files.b64u_dec(h)), json.loads(files.b64u_dec(p))
        return (hdr if isinstance(hdr, dict) else {}), (body if isinstance(body, dict) else {})
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError):
        return {}, {}


class Verifier:
    """Verifies tokens against the devices of a Store (keys cached per kid)."""

    def __init__(self, store: Store, window: float = WINDOW):
        self.store = store
        self.window = window
        self._keys = _Keys(store)
        self.signer: Device | None = None  # whose key verified the last token's signature

    def verify(self, token: str | bytes, nonce: str, issued: float, now: float) -> Evidence:
        tok = token.decode("ascii", "replace") if isinstance(token, bytes) else str(token)
        self._keys.device = self.signer = None
        try:
            hdr, payload = jose.verify(tok, self._keys, MAX_TOKEN)  # steps 1-3
        except JoseError as e:
            if e.reason != "unknown_key":
                raise AttestError(e.reason) from None
            h, c = _unverified(tok)
            k = h.get("kid", "")
            if not kid_form(k):  # names no key; its text is the sender's, shown escaped
                raise AttestError("unknown_device", f"malformed kid {ascii(k)[:64]}") from None
            known = None
            u = c.get("ueid")
            if isinstance(u, str):  # b64u_dec(n) of an integer n would make n zero bytes
                try:
                    known = self.store.device(files.b64u_dec(u))
                except ValueError:
                    pass
                except InventoryError as ie:  # a UEID no board can have names none
                    if ie.reason != "bad_record":
                        raise
            raise AttestError("wrong_key" if known else "unknown_device", k) from None
        kid = hdr["kid"]
        dev = self._keys.device  # the device whose key the signature was checked with
        if dev is None:  # not reached: jose.verify took the key from a device
            raise AttestError("unknown_device", kid)
        self.signer = dev  # the signature verified with its key: refusals from here are its
        if dev.revoked is not None:  # its certificate was revoked: its key is not trusted
            raise AttestError("device_revoked", dev.revoked)
        try:
            claims = _CLAIMS_JSON.decode(payload)
        except (ValueError, UnicodeDecodeError, RecursionError, MemoryError):
            # RecursionError: signed JSON nested deeper than the parser's stack (a few KB of
            # "[[[...") is a refusal like any other, not a crash of the verifier
            raise AttestError("bad_claims", "payload is not JSON") from None
        check_claims(claims)  # step 4
        if files.b64u_dec(claims["ueid"]) != dev.ueid:  # step 5
            raise AttestError("ueid_mismatch", claims["ueid"])
        if claims["eat_nonce"] != nonce:  # step 6
            raise AttestError("old_nonce")
        if now - issued > self.window or now < issued:  # step 7
            raise AttestError("stale", f"answered after {now - issued:.1f} s")
        iat = claims.get("iat")
        if iat is not None and abs(iat - now) > self.window:
            raise AttestError("stale", f"iat is {iat - now:+.0f} s from now")
        return Evidence(tok, kid, dev, claims, now)
