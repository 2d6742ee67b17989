"""Every call `mpguard provision` (and `devices`) makes to a board's agent, in one place.

Each function names one agent function of `guard.identity`; arguments and answers are JSON
(bytes as base64url). The board refuses with `DeviceRefused(reason)`; nothing here ever
asks for or receives the private key. When the board RPC gets its dispatcher (guard.rpc),
only `_call` changes.

    identity.status()                    -> {state, ueid, uid, pub, kid, cert_sha256,
                                             pending_pub, pending_kid, store}
    identity.begin(entropy_b64u, force)  -> status()   (makes or keeps the pending key)
    identity.csr(challenge, pending)     -> base64url DER of a PKCS#10 request
    identity.install(cert_b64u, [ca])    -> status()
    identity.certificate()               -> {cert, ca} base64url DER
    info.facts()                         -> {agent, micropython, ...}  (agent version)
    hw.board_kind()                      -> the installed board profile's kind, or None
"""

from __future__ import annotations

from typing import Any

from ..errors import CommandError, DeviceError, DeviceRefused
from ..files import b64u_dec, b64u_enc
from ..link import BoardLink


def _call(link: BoardLink, name: str, *args: Any) -> Any:
    mod, _, fn = name.rpartition(".")
    # the link's timeout (10 s by default) bounds each call: key generation and a signature
    # take well under a second on the unix port, a few seconds at most on an ESP32
    return link.call(f"guard.{mod or 'identity'}.{fn}", *args)


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
        _call(link, "status")
    except DeviceRefused as e:
        if e.reason == "bad_call":
            return False
        raise
    except DeviceError as e:
        if e.exc_type in ("ImportError", "ModuleNotFoundError", "AttributeError"):
            return False
        raise
    return True


def status(link: BoardLink) -> dict[str, Any]:
    st = _call(link, "status")
    if not isinstance(st, dict) or "state" not in st:
        raise CommandError(f"the board's agent answered identity.status with {st!r}")
    return st


def begin(link: BoardLink, entropy: bytes, force: bool) -> dict[str, Any]:
    return dict(_call(link, "begin", b64u(entropy), force))


def csr(link: BoardLink, challenge: str, pending: bool = True) -> bytes:
    return unb64u(str(_call(link, "csr", challenge, pending)))


def install(link: BoardLink, cert_der: bytes, ca_der: bytes) -> dict[str, Any]:
    return dict(_call(link, "install", b64u(cert_der), [b64u(ca_der)]))


def certificate(link: BoardLink) -> tuple[bytes, bytes]:
    got = _call(link, "certificate")
    return unb64u(got["cert"]), unb64u(got["ca"])


def agent_version(link: BoardLink) -> str:
    return str(_call(link, "info.facts").get("agent"))


def board_kind(link: BoardLink) -> str | None:
    kind = _call(link, "hw.board_kind")
    return str(kind) if kind else None


def reset_heap(link: BoardLink) -> None:
    """A soft reset: key generation and signing get the board's whole heap."""
    link.soft_reset()
