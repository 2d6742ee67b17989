"""`mpguard provision`: give a board its identity, and the inventory a record of it.

In order (docs/provision.md); the order is what makes it resumable, since an interruption
anywhere leaves the board with no identity or a complete one, and a re-run finishes:
 1. load the device CA (passphrase) and open the inventory: a failure here touches nothing
 2. soft reset (the whole heap); install the agent if the board lacks guard.identity
 3. a board with an identity: its certificate must name the UEID the board reports (else a
    cloned flash image: ueid_mismatch) and carry its key; with a matching inventory record
    and a fresh proof of possession it is "already" provisioned: nothing changes. A record
    with another key (key_mismatch), or no record, or a damaged one (bad_store) needs --force.
 4. a pending key already recorded (cut short after step 7): prove possession, install the
    recorded certificate ("resumed")
 5. else make (or keep) the pending key: `begin` with 32 bytes of host entropy
 6. proof of possession: a fresh challenge; the board's PKCS#10 request is checked
    (identity.csr.check) before anything is issued
 7. a key that belongs to another board is refused (a clone); then the certificate is
    issued and recorded: add_device, or with --force replace_identity (the old certificate
    revoked, history kept, the CRL signed again)
 8. the certificate is installed on the board (one atomic write, after a soft reset: the
    whole heap) and the answer checked
"""

from __future__ import annotations

import getpass
import hashlib
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from .. import boards, jose
from .. import project as project_mod
from ..errors import CommandError, IdentityError
from ..link import BoardLink
from . import board, csr, records
from . import ca as device_ca


@dataclass
class Provisioned:
    outcome: str  # provisioned | reprovisioned | resumed | already
    ueid: str  # base64url of the RFC 9711 UEID
    kid: str  # RFC 7638 thumbprint of the board's key
    serial: str  # certificate serial, hex
    not_after: str  # ISO 8601, UTC
    board_kind: str
    agent_installed: bool = False
    revoked: list[str] = field(default_factory=list)  # serials revoked by --force
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def operator() -> str:
    """Who provisions: user@host (recorded in the inventory)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:64]


def provision(link: BoardLink, proj: project_mod.Project, *, passphrase: bytes | None,
              force: bool = False, days: int | None = None, db: str | None = None,
              inventory: Any = None, batch: str | None = None, station: str | None = None,
              kind: str | None = None, by: str | None = None) -> Provisioned:
    t0 = time.monotonic()
    ca = device_ca.DeviceCA(proj.root, passphrase)
    days = int(days if days is not None
               else proj.config.get("device_cert_days", device_ca.DEFAULT_DAYS))
    if not 1 <= days <= device_ca.MAX_DAYS:
        raise IdentityError("bad_days", str(days))
    inv = inventory if inventory is not None else records.open_inventory(proj.root, db)
    try:
        run = _Run(link, proj, ca, inv, force=force, days=days, batch=batch, station=station,
                   kind=kind, by=by or operator())
        res = run.go()
    finally:
        if inventory is None:
            inv.close()
    res.seconds = time.monotonic() - t0
    return res


def _ueid_bytes(ueid_b64: str) -> bytes:
    return board.unb64u(ueid_b64)


class _Run:
    def __init__(self, link: BoardLink, proj: project_mod.Project, ca: device_ca.DeviceCA,
                 inv: Any, **kw: Any):
        self.link, self.proj, self.ca, self.inv = link, proj, ca, inv
        self.force: bool = kw["force"]
        self.days: int = kw["days"]
        self.batch, self.station, self.kind, self.by = (kw["batch"], kw["station"], kw["kind"],
                                                        kw["by"])
        self.agent_installed = False

    def go(self) -> Provisioned:
        link = self.link
        board.reset_heap(link)  # what ran before (file copies, an app) leaves the heap in pieces
        if not board.has_identity_agent(link):
            from ..agent import install as agent_install

            anchors = self.proj.board_anchors()
            agent_install.install(link, anchors, kind=self.kind)
            self.agent_installed = True
            board.reset_heap(link)
        self.kind = self.kind or board.board_kind(link)
        if not self.kind:
            raise CommandError("the board has no board profile: give --board KIND")
        st = board.status(link)
        rec = self.inv.device(_ueid_bytes(st["ueid"])) if st["ueid"] else None

        if st["state"] == "complete" and (not st["pending_pub"] or (
                rec is not None and rec.thumbprint == st["kid"])):
            # (a pending key left by a cut `--force` or identity rotation beside a current key
            # its record names: the board is what the record says)
            done = self._check_current(st, rec)
            if done is not None:
                return done
        if st["pending_kid"] and rec is not None and rec.thumbprint == st["pending_kid"] \
                and not rec.certificate.revoked:
            self._prove(st, pending=True)  # step 4: resume
            self._install(rec.certificate.der, st["pending_kid"])
            return self._result("resumed", rec.certificate.der, st)
        if st["state"] == "damaged" and not self.force:
            raise IdentityError("bad_store", "the board's identity record does not parse")
        if rec is not None and not self.force:
            raise IdentityError("identity_known", f"UEID {st['ueid']} has key {rec.thumbprint}, "
                                "the board has none of it")
        if st["state"] == "complete" and not self.force:
            raise IdentityError("identity_exists")

        before = st["ueid"]
        st = board.begin(link, secrets.token_bytes(32), self.force)  # step 5
        if before and st["ueid"] != before:  # the board names another board now
            raise IdentityError("ueid_mismatch", f"the board said {before}, then {st['ueid']}")
        ueid = _ueid_bytes(st["ueid"])
        rec = self.inv.device(ueid)
        if rec is not None and not self.force:  # its UEID is recorded: another board's, or
            raise IdentityError("identity_known", f"UEID {st['ueid']} is recorded with key "
                                f"{rec.thumbprint}")  # one it gave no proof of
        pub = self._prove(st, pending=True)  # step 6
        kid = st["pending_kid"]
        other = self.inv.device_by_thumbprint(kid)  # step 7
        if other is not None and bytes.fromhex(other.ueid) != ueid:
            raise IdentityError("duplicate_key", f"key {kid} is the key of board "
                                f"{board.b64u(bytes.fromhex(other.ueid))}: a cloned board?")
        cert = self.ca.issue(pub, st["ueid"], days=self.days)
        der = cert.public_bytes(serialization.Encoding.DER)
        point = csr.point(pub)
        common = dict(public_key=point, cert_der=der, provisioned_by=self.by, thumbprint=kid,
                      cert_serial=cert.serial_number, not_after=cert.not_valid_after_utc,
                      station=self.station)
        revoked: list[str] = []
        if rec is None:
            self.inv.add_device(ueid, kind=self.kind, chip=boards.load_profile(self.kind)["chip"],
                                mac=st["uid"], agent_version=board.agent_version(link),
                                batch=self.batch, **common)
            outcome = "provisioned"
        else:
            before = {c.serial for c in self.inv.revoked()}
            self.inv.replace_identity(ueid, agent_version=board.agent_version(link),
                                      reason="superseded", event="reprovision", **common)
            revoked = [format(c.serial, "x") for c in self.inv.revoked() if c.serial not in before]
            records.write_crl(self.ca, self.inv)
            outcome = "reprovisioned"
        self._install(der, kid)  # step 8
        res = self._result(outcome, der, st)
        res.revoked = revoked
        return res

    def _check_current(self, st: dict, rec: Any) -> Provisioned | None:
        """Step 3: "already" when board, certificate and record agree; refusals without --force."""
        cert_der, _ = board.certificate(self.link)
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError:  # the board's record holds something else in its place
            if self.force:
                return None
            raise IdentityError("bad_store", "the board's certificate does not parse") from None
        cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        problem = None
        if cn != [st["ueid"]]:
            problem = IdentityError("ueid_mismatch", f"its certificate is for {cn[0] if cn else '?'}, "
                                    f"the board is {st['ueid']}")
        elif csr.point(cert.public_key()) != board.unb64u(st["pub"]):  # type: ignore[arg-type]
            problem = IdentityError("bad_store", "its certificate is not for its key")
        elif rec is None:
            problem = IdentityError("identity_exists", "it is not in this project's inventory")
        elif rec.thumbprint != st["kid"]:
            problem = IdentityError("key_mismatch", f"the board's key is {st['kid']}, "
                                    f"its record's {rec.thumbprint}")
        elif rec.certificate.der != cert_der or rec.certificate.revoked:
            problem = IdentityError("identity_known", "the board's certificate is not its "
                                    "record's current one")
        if problem is not None:
            if self.force:
                return None
            raise problem
        self._prove(st, pending=False)
        if self.force:
            return None
        return self._result("already", cert_der, st)

    def _prove(self, st: dict, *, pending: bool) -> Any:
        """A fresh challenge; the board's request must be signed by the key it reported."""
        challenge = board.b64u(secrets.token_bytes(18))
        req = board.csr(self.link, challenge, pending)
        key = st["pending_pub"] if pending else st["pub"]
        return csr.check(req, ueid=st["ueid"], challenge=challenge,
                         public_key=board.unb64u(key))

    def _install(self, der: bytes, kid: str) -> None:
        board.reset_heap(self.link)  # the install parses two certificates and verifies one
        st = board.install(self.link, der, self.ca.der)
        if (st.get("state") != "complete" or st.get("kid") != kid
                or st.get("cert_sha256") != hashlib.sha256(der).hexdigest()):
            raise IdentityError("bad_store", "the board did not keep the certificate it was given")

    def _result(self, outcome: str, der: bytes, st: dict) -> Provisioned:
        cert = x509.load_der_x509_certificate(der)
        return Provisioned(outcome, st["ueid"], jose.thumbprint(cert.public_key()),
                           format(cert.serial_number, "x"),
                           cert.not_valid_after_utc.isoformat(), str(self.kind),
                           self.agent_installed)
