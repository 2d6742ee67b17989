"""Signed posture attestation (docs/attest.md): the board attests (guard.attest), mpguard
verifies (verify), judges with a policy (facts, policy), records (store) and reports
(report, html, ear); `mpguard report` builds the fleet view (fleet)."""

from .policy import Appraisal, Policy
from .policy import load as load_policy
from .run import Attestation, appraise_token, attest, new_nonce
from .store import Device, Store, open_store
from .verify import CLAIM, PROFILE, Evidence, Verifier

__all__ = [
    "CLAIM", "PROFILE", "Appraisal", "Attestation", "Device", "Evidence", "Policy", "Store",
    "Verifier", "appraise_token", "attest", "load_policy", "new_nonce", "open_store",
]
