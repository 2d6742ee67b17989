"""`mpguard rotate --port P identity`: a new identity key on the board, proven by the old one.

In order (docs/rotate.md); each step leaves the board with a working identity the inventory
knows, and the same command run again finishes what an interruption left:
 1. load the device CA (passphrase), open the inventory; the board's identity must be its
    record's current one (not_provisioned, key_mismatch) - or the pending key the record
    already names (an interrupted rotation: resume at step 5), or the record's current key
    with older certificates still valid (interrupted after step 5: resume at step 6)
 2. the board makes a pending key (`identity.begin`, host entropy mixed in); its identity
    stays the old one until step 5
 3. continuity proof: the *old* key signs {"new": pending point, "nonce": a fresh challenge}
    (`identity.proof`); the host verifies it with the public key the inventory recorded,
    not one the board reports (bad_proof)
 4. proof of possession of the new key: a PKCS#10 request with a fresh challenge
    (identity.csr.check); a key that is another board's is refused (duplicate_key)
 5. the certificate is issued and recorded as the board's current one, the proof kept in
    the `rotate_identity` event; the old certificate stays valid for now. Then it is
    installed on the board (one atomic write; the board wraps its secrets' key under the
    new key first, so secrets stay readable)
 6. only now the old certificate is revoked (superseded) and the CRL signed again
Interrupted before 5: the board keeps its old identity, the inventory its old record (the
pending key is dropped by the next rotation's begin). Between 5 and 6: the board works with
the old certificate (still valid) or the new one; a re-run installs the recorded
certificate if needed and revokes the old one.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .. import jose
from ..errors import DeviceError, DeviceRefused, IdentityError, JoseError, RotateError
from ..identity import board, csr, records
from ..identity import ca as device_ca
from ..identity.provision import operator as who
from ..link import BoardLink

EVENT = "rotate_identity"
ATTEMPTS = 5


@dataclass
class IdentityRotation:
    outcome: str  # rotated | resumed
    ueid: str
    old_kid: str
    kid: str
    serial: str  # the new certificate's, hex
    not_after: str
    revoked: list[str] = field(default_factory=list)  # serials revoked (hex)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rotate_identity(link: BoardLink, ca: device_ca.DeviceCA, inv: Any, *, days: int,
                    by: str | None = None) -> IdentityRotation:
    t0 = time.monotonic()
    by = by or who()
    board.reset_heap(link)
    st = board.status(link)
    if not st.get("ueid"):
        raise RotateError("not_provisioned", f"identity state {st.get('state')}")
    ueid = board.unb64u(st["ueid"])
    dev = inv.device(ueid)
    if dev is None or st.get("state") != "complete":
        raise RotateError("not_provisioned", f"UEID {st['ueid']}: identity {st.get('state')}, "
                          f"{'in' if dev else 'not in'} the inventory")
    if dev.certificate.revoked:
        # a rotation's continuity proof is signed by the current key: a revoked one proves
        # nothing, and a new certificate would undo the revocation
        raise RotateError("device_revoked", f"certificate {dev.certificate.serial:x} revoked "
                          f"({dev.certificate.revoke_reason or 'no reason given'}): "
                          "a revoked board gets a new identity only by `provision --force`")
    certs = inv.certificates(ueid)
    if st["kid"] == dev.thumbprint:
        stale = [c for c in certs if not c.revoked and c.thumbprint != dev.thumbprint]
        if stale:  # interrupted after the board took the new identity: finish (step 6)
            return _finish(ca, inv, ueid, dev, stale, stale[0].thumbprint, "resumed", t0)
    elif st.get("pending_kid") == dev.thumbprint:  # interrupted in step 5: resume there
        old = [c for c in certs if not c.revoked and c.thumbprint == st["kid"]]
        if not old:
            raise RotateError("key_mismatch", f"the board's key {st['kid']} has no valid "
                              "certificate in its record")
        _retry(link, lambda: _possession(link, st))
        _install(link, ca, dev.certificate.der, dev.thumbprint)
        return _finish(ca, inv, ueid, dev, old, old[0].thumbprint, "resumed", t0)
    else:
        raise RotateError("key_mismatch", f"the board's key is {st['kid']}, its record's "
                          f"{dev.thumbprint}")
    old_pub, old_kid = bytes(dev.public_key), dev.thumbprint

    # step 2 (a stale pending key goes); key generation gets the whole heap
    st = _retry(link, lambda: board.begin(link, secrets.token_bytes(32), True))
    new_pub = board.unb64u(st["pending_pub"])
    proof = _retry(link, lambda: _continuity(link, old_pub, old_kid, new_pub))  # step 3
    pub = _retry(link, lambda: _possession(link, st))  # step 4
    kid = st["pending_kid"]
    other = inv.device_by_thumbprint(kid)
    if other is not None:
        raise IdentityError("duplicate_key", f"key {kid} is another board's: a cloned board?")
    cert = ca.issue(pub, st["ueid"], days=days)  # step 5
    der = cert.public_bytes(serialization.Encoding.DER)
    inv.replace_identity(ueid, public_key=csr.point(pub), cert_der=der, provisioned_by=by,
                         thumbprint=kid, cert_serial=cert.serial_number,
                         not_after=cert.not_valid_after_utc,
                         agent_version=board.agent_version(link), reason="superseded",
                         event=EVENT, revoke=False, data={"proof": proof})
    _install(link, ca, der, kid)
    dev = inv.device(ueid)
    stale = [c for c in inv.certificates(ueid) if not c.revoked and c.thumbprint == old_kid]
    return _finish(ca, inv, ueid, dev, stale, old_kid, "rotated", t0)


def _continuity(link: BoardLink, old_pub: bytes, old_kid: str, new_pub: bytes) -> str:
    """Step 3: the old key's signature over the pending key and a fresh nonce."""
    nonce = board.b64u(secrets.token_bytes(18))
    token = str(link.call("identity.proof", [nonce]))
    try:
        _, payload = jose.verify(token, {old_kid: old_pub})
        body = json.loads(payload)
    except (JoseError, ValueError) as e:
        raise RotateError("bad_proof", str(e)) from None
    if not isinstance(body, dict) or body.get("nonce") != nonce or body.get("new") != board.b64u(new_pub):
        raise RotateError("bad_proof", "it does not name the pending key and this challenge")
    return token


def _possession(link: BoardLink, st: dict[str, Any]) -> Any:
    challenge = board.b64u(secrets.token_bytes(18))
    req = board.csr(link, challenge, True)
    return csr.check(req, ueid=st["ueid"], challenge=challenge,
                     public_key=board.unb64u(st["pending_pub"]))


def _retry(link: BoardLink, fn: Any) -> Any:
    """fn() on a fresh heap, again after a MemoryError (the board's peak is near a 64 KiB
    heap's end); every call retried here leaves the board as it was, or done."""
    for attempt in range(ATTEMPTS):
        board.reset_heap(link)
        try:
            return fn()
        except DeviceError as e:
            if isinstance(e, DeviceRefused) or e.exc_type != "MemoryError" \
                    or attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # noqa: B011 (the loop returns or raises)


def _install(link: BoardLink, ca: device_ca.DeviceCA, der: bytes, kid: str) -> None:
    def done(st: dict[str, Any]) -> bool:
        return (st.get("state") == "complete" and st.get("kid") == kid
                and st.get("cert_sha256") == hashlib.sha256(der).hexdigest())

    def once() -> dict[str, Any]:
        st = board.status(link)  # kept by an attempt that ran out of heap after its write
        return st if done(st) else board.install(link, der, ca.der)

    if not done(_retry(link, once)):
        raise IdentityError("bad_store", "the board did not keep the certificate it was given")


def _finish(ca: device_ca.DeviceCA, inv: Any, ueid: bytes, dev: Any, stale: list[Any],
            old_kid: str, outcome: str, t0: float) -> IdentityRotation:
    """Step 6: the old certificates revoked (superseded), the CRL signed again."""
    revoked = []
    for c in stale:
        inv.revoke(c.serial, "superseded", note="identity rotated")
        revoked.append(format(c.serial, "x"))
    if revoked:
        records.write_crl(ca, inv)
    cert = x509.load_der_x509_certificate(dev.certificate.der)
    return IdentityRotation(outcome, board.b64u(ueid), old_kid, dev.thumbprint,
                            format(cert.serial_number, "x"),
                            cert.not_valid_after_utc.isoformat(), revoked,
                            round(time.monotonic() - t0, 3))
