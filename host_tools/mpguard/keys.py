"""P-256 keys on the host: generate, store as PEM, load back, raw public bytes, thumbprints.

Private keys are written encrypted with a passphrase (PKCS#8, `BestAvailableEncryption`)
and with file mode 0600; an unencrypted private key is written only when the caller says
`allow_plaintext=True`. Passphrases come from $MPGUARD_PASSPHRASE (scripts) or a prompt
that does not echo; they never appear in an error message or a log.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import KeyStoreError, PassphraseError
from .files import atomic_write, b64u_enc, remember

PASSPHRASE_ENV = "MPGUARD_PASSPHRASE"
MIN_PASSPHRASE = 12  # shorter ones are accepted with a warning (a new key only)
_TRIES = 3  # a typed new passphrase and its repetition may differ this many times
PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey


def generate() -> PrivateKey:
    """A new P-256 private key from the operating system's random source."""
    return ec.generate_private_key(ec.SECP256R1())


def _p256_private(key: object) -> PrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyStoreError("not a P-256 private key")
    return key


def p256_public(key: object) -> PublicKey:
    """A P-256 public key from a private or public key object or a 33/65-byte SEC1 point."""
    # the two kinds a verifier hands in for every token first (a point, a public key object):
    # each ABC isinstance costs about half a microsecond
    if isinstance(key, (bytes, bytearray, memoryview)):
        return public_from_bytes(bytes(key))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyStoreError("not a P-256 key")
        key = key.public_key()
    if not isinstance(key.curve, ec.SECP256R1):
        raise KeyStoreError("not a P-256 key")
    return key


def public_bytes(key: PrivateKey | PublicKey | bytes) -> bytes:
    """The 65-byte uncompressed SEC1 point (0x04 || X || Y) of a key, as the board stores it."""
    return p256_public(key).public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


# SEC1 bytes -> parsed public key: parsing (decompression, the on-curve check) costs about
# as much as half a signature check, and a fleet's few keys come back token after token. Keyed
# by the exact bytes, so an entry is only ever the key those bytes encode; bounded (the oldest
# goes first). Bytes that are not a key are never remembered.
_POINTS: dict[bytes, PublicKey] = {}
POINT_CACHE = 4096


def public_from_bytes(data: bytes) -> PublicKey:
    """A public key from a 33- or 65-byte SEC1 point, fully validated (on the curve)."""
    data = bytes(data)
    key = _POINTS.get(data)
    if key is not None:
        return key
    if len(data) not in (33, 65):
        raise KeyStoreError(f"a P-256 public key is 33 or 65 bytes, not {len(data)}")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
    except ValueError:
        raise KeyStoreError("not a valid P-256 public key (not on the curve)") from None
    remember(_POINTS, data, key, POINT_CACHE)
    return key


def thumbprint(key: PrivateKey | PublicKey | bytes) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` of this key."""
    nums = p256_public(key).public_numbers()
    # RFC 7638 3.2: required members only, lexicographic order, no whitespace
    jwk = {"crv": "P-256", "kty": "EC", "x": b64u_enc(nums.x.to_bytes(32, "big")),
           "y": b64u_enc(nums.y.to_bytes(32, "big"))}
    canon = json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()
    return b64u_enc(hashlib.sha256(canon).digest())


def _as_bytes(passphrase: str | bytes) -> bytes:
    return passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)


def _write(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    # files.atomic_write: a new temporary file (O_EXCL, random name) with its final mode,
    # then renamed: never a partly written key, never a moment where a private key is
    # readable by others, never written through a planted symlink
    path = Path(path)
    if not path.parent.is_dir():
        raise KeyStoreError(f"no such directory: {path.parent}")
    try:
        atomic_write(path, data, mode=mode, overwrite=overwrite)
    except FileExistsError:
        raise KeyStoreError(f"{path} exists; not overwriting a key") from None
    except OSError as e:
        raise KeyStoreError(f"cannot write {path}: {e.strerror}") from None


def save_private(
    key: PrivateKey,
    path: str | Path,
    passphrase: str | bytes | None,
    *,
    allow_plaintext: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a private key as PKCS#8 PEM, mode 0600, encrypted with `passphrase`.

    `passphrase=None` writes it unencrypted, and only with `allow_plaintext=True`.
    """
    key = _p256_private(key)
    if passphrase is None:
        if not allow_plaintext:
            raise PassphraseError(
                "refusing to write an unencrypted private key (give a passphrase, "
                "or opt out explicitly)"
            )
        enc: serialization.KeySerializationEncryption = serialization.NoEncryption()
    else:
        pw = _as_bytes(passphrase)
        if not pw:
            raise PassphraseError("an empty passphrase is not allowed")
        enc = serialization.BestAvailableEncryption(pw)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    path = Path(path)
    _write(path, pem, PRIVATE_MODE, overwrite)
    return path


def is_encrypted(path: str | Path) -> bool:
    """Whether a private key PEM file is passphrase-protected."""
    data = _read(Path(path))
    return b"ENCRYPTED" in data.split(b"\n", 1)[0]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(f"no key file at {path}") from None
    except OSError as e:
        raise KeyStoreError(f"cannot read {path}: {e.strerror}") from None


def load_private(path: str | Path, passphrase: str | bytes | None = None) -> PrivateKey:
    """Read a private key PEM; a clear PassphraseError when the passphrase is missing or wrong."""
    path = Path(path)
    data = _read(path)
    pw = None if passphrase is None else _as_bytes(passphrase)
    try:
        key = serialization.load_pem_private_key(data, password=pw or None)
    except TypeError:
        # encrypted but no passphrase given, or a passphrase given for a plaintext key
        if pw is None or not pw:
            raise PassphraseError(f"{path} is encrypted: a passphrase is needed") from None
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        if b"ENCRYPTED" in data:
            raise PassphraseError(f"wrong passphrase for {path}") from None
        raise KeyStoreError(f"{path} is not a PEM private key") from None
    except Exception:  # unsupported formats raise library-specific errors
        raise KeyStoreError(f"{path} is not a readable private key") from None
    try:
        return _p256_private(key)
    except KeyStoreError:
        raise KeyStoreError(f"{path} is not a P-256 key") from None


def public_pem(key: PrivateKey | PublicKey | bytes) -> str:
    """The public half of a key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`)."""
    return p256_public(key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def save_public(key: PrivateKey | PublicKey | bytes, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a public key as SubjectPublicKeyInfo PEM (mode 0644)."""
    path = Path(path)
    _write(path, public_pem(key).encode("ascii"), PUBLIC_MODE, overwrite)
    return path


def load_public(path: str | Path) -> PublicKey:
    """Read a SubjectPublicKeyInfo PEM public key (P-256 only)."""
    path = Path(path)
    data = _read(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise KeyStoreError(f"{path} is not a PEM public key") from None
    try:
        return p256_public(key)
    except KeyStoreError:
        raise KeyStoreError(f"{path} is not a P-256 key") from None


def passphrase(
    prompt: str = "key passphrase: ",
    *,
    confirm: bool = False,
    env: Mapping[str, str] | None = None,
    ask: Callable[[str], str] | None = None,
    interactive: bool | None = None,
) -> bytes:
    """The passphrase from $MPGUARD_PASSPHRASE, else typed at a prompt that does not echo.

    `confirm` (a new key) asks twice, again up to three times when the two differ, and warns
    on stderr when it is shorter than MIN_PASSPHRASE. Raises PassphraseError if it is empty,
    the entries keep differing, or there is no terminal to ask on and the variable is unset.
    """
    env = os.environ if env is None else env
    value = env.get(PASSPHRASE_ENV)
    if value is not None:
        if not value:
            raise PassphraseError(f"{PASSPHRASE_ENV} is set but empty")
        if confirm:
            _warn_short(value)
        return value.encode("utf-8")
    ask = ask or getpass.getpass
    if interactive is None:
        interactive = sys.stdin.isatty()
    if not interactive:
        raise PassphraseError(f"no passphrase: set {PASSPHRASE_ENV} (no terminal to ask on)")
    for _ in range(_TRIES if confirm else 1):
        first = ask(prompt)
        if not first:
            raise PassphraseError("an empty passphrase is not allowed")
        if not confirm:
            return first.encode("utf-8")
        _warn_short(first)
        if ask("again: ") == first:
            return first.encode("utf-8")
        print("the two passphrases differ; try again", file=sys.stderr)
    raise PassphraseError("the two passphrases differ")


def _warn_short(value: str) -> None:
    if len(value) < MIN_PASSPHRASE:
        print(f"warning: a passphrase under {MIN_PASSPHRASE} characters is easy to guess "
              "offline from a copy of the key file", file=sys.stderr)
