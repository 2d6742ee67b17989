"""One attestation, end to end: nonce, token from the board, verification, appraisal, record.

    nonce    32 random bytes, base64url (43 characters: RFC 9711 4.1's 10..74 for JSON)
    token    guard.attest.token(nonce) on the board (mpguard.attest.board), after a soft
             reset that gives the agent a clean heap (as `mpguard deploy` does)
    verify   mpguard.attest.verify (signature against the inventory's key, UEID, nonce,
             freshness); then the inventory's record of the board's nonces: a nonce seen
             before is refused (replayed)
    appraise the policy over the facts (mpguard.attest.facts, mpguard.attest.policy)
    record   the inventory gets an "attestation" event (nonce, kid, token, verdict, results,
             facts), or an "attestation_refused" event (nonce, kid, reason) when the token's
             signature verified with a known board's key: a token that only names a board
             (its `kid` is public) is not that board's. Values of the board's the inventory
             refuses to store (a private key's text, a field named like a password, NaN) make
             the attestation a refusal of that board, bad_claims, recorded without them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import files
from ..errors import AttestError, InventoryError
from . import board, facts
from .policy import Appraisal, Policy
from .store import ATTESTATION, REFUSED, Store
from .verify import Evidence, Verifier

if TYPE_CHECKING:
    from ..link import BoardLink


def new_nonce() -> str:
    return files.b64u_enc(secrets.token_bytes(32))


@dataclass
class Attestation:
    evidence: Evidence
    appraisal: Appraisal
    nonce: str

    @property
    def verdict(self) -> str:
        return self.appraisal.verdict

    def as_dict(self) -> dict[str, Any]:
        ev = self.evidence
        return {
            "device": {"ueid": ev.device.ueid_hex, "kid": ev.kid, "name": ev.device.name},
            "verdict": self.verdict,
            "counts": self.appraisal.counts(),
            "policy": self.appraisal.policy,
            "results": [r.as_dict() for r in self.appraisal.results],
            "facts": {k: f.as_dict() for k, f in ev.facts.items()},
            "claims": ev.claims,
            "token": ev.token,
            "nonce": self.nonce,
        }


def appraise_token(store: Store, policy: Policy, tok: str, nonce: str, issued: float,
                   now: float, window: float = 60.0) -> Attestation:
    """Verify and judge a token received for `nonce`; record the outcome in the inventory."""
    v = Verifier(store, window)
    try:
        ev = v.verify(tok, nonce, issued, now)
        if store.nonce_seen(ev.device.ueid, ev.claims["eat_nonce"]):
            raise AttestError("replayed")
    except AttestError as e:
        dev = v.signer  # None unless the signature verified with a board's key
        if dev is not None:
            _refused(store, dev, nonce, e.reason)
        raise
    ev.facts = facts.derive(ev.claims)
    ap = policy.appraise(ev.facts)
    att = Attestation(ev, ap, nonce)
    data = att.as_dict()
    try:
        store.record(ev.device.ueid, ATTESTATION, {
            "nonce": nonce, "kid": ev.kid, "token": tok, "verdict": ap.verdict,
            "counts": data["counts"], "policy": ap.policy, "results": data["results"],
            # as [name, fact] pairs: a fact name is data, not a field (the inventory refuses
            # a field named like a password, and webrepl_password is only its class)
            "facts": sorted(data["facts"].items())})
    except InventoryError as e:
        if e.reason not in ("private_data", "bad_event"):
            raise
        # the board's own values cannot be stored (nothing was written): its attestation is
        # refused, recorded without them, so the fleet report does not keep its last verdict
        _refused(store, ev.device, nonce, "bad_claims")
        raise AttestError("bad_claims", f"the inventory refuses to store the board's "
                                        f"values ({e.reason})") from None
    return att


def _refused(store: Store, dev: Any, nonce: str, reason: str) -> None:
    store.record(dev.ueid, REFUSED, {"nonce": nonce, "reason": reason, "kid": dev.kid})


def attest(link: BoardLink, store: Store, policy: Policy, *, window: float = 60.0,
           soft_reset: bool = True, clock: Callable[[], float] = time.time) -> Attestation:
    """Attest the board on `link` (see the module docstring for the steps)."""
    if soft_reset:
        link.soft_reset()
    nonce = new_nonce()
    issued = clock()
    tok = board.token(link, nonce)
    return appraise_token(store, policy, tok, nonce, issued, clock(), window)
