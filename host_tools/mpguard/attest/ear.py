"""The appraisal as an EAT Attestation Result (IETF draft-ietf-rats-ear), JSON / JWT.

    {"eat_profile": "tag:github.com,2023:veraison/ear", "iat": ..., "ear.verifier-id":
     {"developer": "mpguard", "build": "mpguard 0.1.0"}, "submods": {"<board>":
     {"ear.status": tier, "ear.trustworthiness-vector": {claim: tier value, ...},
      "ear.appraisal-policy-id": "mpguard-default@1"}}}

Tiers (AR4SI, draft-ietf-rats-ar4si): none 0, affirming 2, warning 32, contraindicated 96.
Each policy rule names the trustworthiness claim it bears on (`tv`, optional); a claim's
value is the worst tier of its rules (pass 2, warn 32, fail 96). ear.status is the worst tier
of all the rules, those without `tv` too (a skip counts for none): it follows the verdict,
pass affirming, warn warning, fail contraindicated, so a failing board is never "affirming". The
per-rule results travel beside it in the private claim "mpguard.results". Signed, it is a
JWS ES256 (mpguard.jose) any JOSE library verifies with the verifier's public key.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .. import __version__, jose
from .policy import Appraisal

EAR_PROFILE = "tag:github.com,2023:veraison/ear"
TIER = {"pass": 2, "warn": 32, "fail": 96}
STATUS = {0: "none", 2: "affirming", 32: "warning", 96: "contraindicated"}


def claims(appraisal: Appraisal, board: str, *, iat: int | None = None,
           nonce: str | None = None) -> dict[str, Any]:
    tv: dict[str, int] = {}
    worst = 0
    for r in appraisal.results:
        if r.outcome in TIER:
            worst = max(worst, TIER[r.outcome])
            if r.tv:
                tv[r.tv] = max(tv.get(r.tv, 0), TIER[r.outcome])
    status = STATUS[worst]
    sub: dict[str, Any] = {"ear.status": status, "ear.trustworthiness-vector": tv,
                           "ear.appraisal-policy-id": appraisal.policy}
    out: dict[str, Any] = {
        "eat_profile": EAR_PROFILE,
        "iat": int(time.time()) if iat is None else iat,
        "ear.verifier-id": {"developer": "mpguard", "build": f"mpguard {__version__}"},
        "submods": {board: sub},
        "mpguard.results": [{"rule": r.rule, "etsi": r.etsi, "outcome": r.outcome}
                            for r in appraisal.results],
    }
    if nonce:
        out["eat_nonce"] = nonce
    return out


def sign(ear: dict[str, Any], key: Any) -> str:
    """The EAR as a JWT (JWS compact, ES256, kid = the verifier key's thumbprint)."""
    body = json.dumps(ear, sort_keys=True, separators=(",", ":")).encode()
    return jose.sign(body, key, {"typ": "JWT"})
