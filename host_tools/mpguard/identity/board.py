"""Every call `mpguard provision` (and `devices`, `deploy`'s history) makes to a board's
agent, in one place: each names an agent function registered in guard.rpc's table, with JSON
arguments (bytes as base64url). A refusal is `DeviceRefused(reason)`; nothing here asks for
or receives the private key.

    identity.status()                    -> {state, ueid, uid, pub, cert_sha256, pending_pub,
                                             store} (bytes as base64url); status() here adds
                                             kid and pending_kid, uid and cert_sha256 in hex
    identity.begin(entropy_b64u, force)  -> status()   (makes or keeps the pending key)
    identity.csr(challenge, pending)     -> base64url DER of a PKCS#10 request
    identity.install(cert_b64u, [ca])    -> status()
    identity.certificate()               -> {cert, ca} base64url DER
    info.facts()                         -> {agent, micropython, ...}  (agent version)
    hw.board_kind()                      -> the installed board profile's kind, or None

The link's timeout (10 s by default) bounds each call: key generation and a signature take
well under a second on the unix port, a few seconds at most on an ESP32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import jose
from ..errors import CommandError, DeviceError, DeviceRefused, MpguardError
from ..files import b64u_dec, b64u_enc

if TYPE_CHECKING:
    from ..link import BoardLink

b64u = b64u_enc


def unb64u(text: str) -> bytes:
    """Strict base64url from the board (or a UEID typed by a user)."""
    try:
        return b64u_dec(text)
    except (ValueError, TypeError):
        raise DeviceError(f"not base64url: {str(text)[:40]!r}") from None


def has_identity_agent(link: BoardLink) -> bool:
    """Whether the board's agent has guard.identity (else the agent must be installed):
    an agent without it cannot import it (or, behind guard.rpc, does not know the name)."""
    try:
        link.call("identity.status")
    except DeviceRefused as e:
        if e.reason == "bad_call":
            return False
        raise
    except DeviceError as e:
        if e.exc_type in ("ImportError", "ModuleNotFoundError", "AttributeError"):
            return False
        raise
    return True


def _norm(st: Any) -> dict[str, Any]:
    """The board's status as the host uses it: key ids (RFC 7638) computed here, the MAC and
    the certificate digest in hex."""
    if not isinstance(st, dict) or "state" not in st:
        raise CommandError(f"the board's agent answered identity.status with {st!r}")
    st = dict(st)
    for k in ("pub", "pending_pub"):
        kid = None
        if st.get(k):
            try:
                kid = jose.thumbprint(unb64u(st[k]))
            except MpguardError:  # a stored point off the curve: the record is damaged
                st[k] = None
                if k == "pub":
                    st["state"] = "damaged"
        st[k.replace("pub", "kid")] = kid
    st["uid"] = unb64u(st["uid"]).hex()
    st["cert_sha256"] = unb64u(st["cert_sha256"]).hex() if st.get("cert_sha256") else None
    return st


def status(link: BoardLink) -> dict[str, Any]:
    return _norm(link.call("identity.status"))


def begin(link: BoardLink, entropy: bytes, force: bool) -> dict[str, Any]:
    return _norm(link.call("identity.begin", [b64u(entropy), force]))


def csr(link: BoardLink, challenge: str, pending: bool = True) -> bytes:
    return unb64u(str(link.call("identity.csr", [challenge, pending])))


def install(link: BoardLink, cert_der: bytes, ca_der: bytes) -> dict[str, Any]:
    return _norm(link.call("identity.install", [b64u(cert_der), [b64u(ca_der)]]))


def certificate(link: BoardLink) -> tuple[bytes, bytes]:
    got = link.call("identity.certificate")
    return unb64u(got["cert"]), unb64u(got["ca"])


def agent_version(link: BoardLink) -> str:
    return str(link.call("info.facts").get("agent"))


def board_kind(link: BoardLink) -> str | None:
    kind = link.call("hw.board_kind")
    return str(kind) if kind else None


def reset_heap(link: BoardLink) -> None:
    """A soft reset: key generation and signing get the board's whole heap."""
    link.soft_reset()
