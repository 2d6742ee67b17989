"""P-256 keys on the host: generate, store as PEM, load back, raw public bytes, thumbprints.

Private keys are written encrypted with a passphrase (PKCS#8, `BestAvailableEncryption`)
and with file mode 0600; an unencrypted private key is written only when the caller says
`allow_plaintext=True`. Passphrases come from $MPGUARD_PASSPHRASE (scripts) or a prompt
that does not echo; they never appear in an error message or a log.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import KeyStoreError, PassphraseError

PASSPHRASE_ENV = "MPGUARD_PASSPHRASE"
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


def _p256_public(key: object) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        key = key.public_key()
    if isinstance(key, (bytes, bytearray, memoryview)):
        return public_from_bytes(bytes(key))
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyStoreError("not a P-256 key")
    return key


def public_bytes(key: PrivateKey | PublicKey | bytes) -> bytes:
    """The 65-byte uncompressed SEC1 point (0x04 || X || Y) of a key, as the board stores it."""
    return _p256_public(key).public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def public_from_bytes(data: bytes) -> PublicKey:
    """A public key from a 33- or 65-byte SEC1 point, fully validated (on the curve)."""
    if len(data) not in (33, 65):
        raise KeyStoreError(f"a P-256 public key is 33 or 65 bytes, not {len(data)}")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(data))
    except ValueError:
        raise KeyStoreError("not a valid P-256 public key (not on the curve)") from None


def thumbprint(key: PrivateKey | PublicKey | bytes) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` of this key."""
    from .jose import thumbprint as _tp

    return _tp(key)


def _as_bytes(passphrase: str | bytes) -> bytes:
    return passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)


def _write(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    # written to a temporary file with its final mode, then renamed: never a partly
    # written key, never a moment where a private key is readable by others
    path = Path(path)
    if path.exists() and not overwrite:
        raise KeyStoreError(f"{path} exists; not overwriting a key")
    if not path.parent.is_dir():
        raise KeyStoreError(f"no such directory: {path.parent}")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed or the fs ignored open's mode
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


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


def save_public(key: PrivateKey | PublicKey | bytes, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a public key as SubjectPublicKeyInfo PEM (mode 0644)."""
    pem = _p256_public(key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = Path(path)
    _write(path, pem, PUBLIC_MODE, overwrite)
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
        return _p256_public(key)
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

    `confirm` asks twice (for a new key). Raises PassphraseError if it is empty, the two
    entries differ, or there is no terminal to ask on and the variable is not set.
    """
    env = os.environ if env is None else env
    value = env.get(PASSPHRASE_ENV)
    if value is not None:
        if not value:
            raise PassphraseError(f"{PASSPHRASE_ENV} is set but empty")
        return value.encode("utf-8")
    ask = ask or getpass.getpass
    if interactive is None:
        interactive = sys.stdin.isatty()
    if not interactive:
        raise PassphraseError(f"no passphrase: set {PASSPHRASE_ENV} (no terminal to ask on)")
    first = ask(prompt)
    if not first:
        raise PassphraseError("an empty passphrase is not allowed")
    if confirm and ask("again: ") != first:
        raise PassphraseError("the two passphrases differ")
    return first.encode("utf-8")
