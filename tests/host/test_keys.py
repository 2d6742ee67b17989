"""mpguard.keys: key files, passphrases, permissions, raw public bytes."""

from __future__ import annotations

import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mpguard import keys
from mpguard.errors import KeyStoreError, MpguardError, PassphraseError

PASS = "correct horse battery staple"


def test_generate_is_p256_and_public_bytes_is_65_uncompressed():
    k = keys.generate()
    assert isinstance(k.curve, ec.SECP256R1)
    pub = keys.public_bytes(k)
    assert len(pub) == 65 and pub[0] == 4
    assert keys.public_bytes(k.public_key()) == pub == keys.public_bytes(pub)
    assert keys.public_bytes(keys.public_from_bytes(pub)) == pub


def test_private_key_round_trip_encrypted_with_mode_0600(tmp_path):
    k = keys.generate()
    p = keys.save_private(k, tmp_path / "k.pem", PASS)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    text = p.read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in text and keys.is_encrypted(p)
    assert PASS.encode() not in text
    again = keys.load_private(p, PASS)
    assert keys.public_bytes(again) == keys.public_bytes(k)
    assert keys.load_private(p, PASS.encode()).private_numbers() == k.private_numbers()


def test_wrong_or_missing_passphrase_is_a_clear_error_that_does_not_echo(tmp_path):
    p = keys.save_private(keys.generate(), tmp_path / "k.pem", PASS)
    with pytest.raises(PassphraseError) as ei:
        keys.load_private(p, "not the passphrase at all")
    assert "wrong passphrase" in str(ei.value)
    assert "not the passphrase" not in str(ei.value) and PASS not in str(ei.value)
    with pytest.raises(PassphraseError, match="passphrase is needed"):
        keys.load_private(p)
    assert isinstance(ei.value, MpguardError)


def test_plaintext_only_when_explicitly_allowed(tmp_path):
    k = keys.generate()
    with pytest.raises(PassphraseError, match="unencrypted"):
        keys.save_private(k, tmp_path / "k.pem", None)
    assert not (tmp_path / "k.pem").exists()
    p = keys.save_private(k, tmp_path / "k.pem", None, allow_plaintext=True)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert not keys.is_encrypted(p)
    assert keys.public_bytes(keys.load_private(p)) == keys.public_bytes(k)


def test_empty_passphrase_refused_and_nothing_written(tmp_path):
    with pytest.raises(PassphraseError, match="empty"):
        keys.save_private(keys.generate(), tmp_path / "k.pem", "")
    assert list(tmp_path.iterdir()) == []


def test_existing_key_is_not_overwritten_unless_asked(tmp_path):
    p = keys.save_private(keys.generate(), tmp_path / "k.pem", PASS)
    before = p.read_bytes()
    with pytest.raises(KeyStoreError, match="exists"):
        keys.save_private(keys.generate(), p, PASS)
    assert p.read_bytes() == before
    keys.save_private(keys.generate(), p, PASS, overwrite=True)
    assert p.read_bytes() != before
    assert [x.name for x in tmp_path.iterdir()] == ["k.pem"]  # no temporary file left


BAD_FILES = {
    "missing": None,
    "not PEM": b"hello",
    "PEM of another curve": "p384",
    "truncated PEM": "truncate",
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_private_key_files(tmp_path, case):
    p = tmp_path / "k.pem"
    val = BAD_FILES[case]
    if val == "p384":
        from cryptography.hazmat.primitives import serialization

        other = ec.generate_private_key(ec.SECP384R1())
        p.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    elif val == "truncate":
        keys.save_private(keys.generate(), p, None, allow_plaintext=True)
        p.write_bytes(p.read_bytes()[:60])
    elif val is not None:
        p.write_bytes(val)
    with pytest.raises(KeyStoreError):
        keys.load_private(p, None)


def test_public_pem_round_trip_and_bad_points(tmp_path):
    k = keys.generate()
    p = keys.save_public(k, tmp_path / "k.pub")
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert keys.public_bytes(keys.load_public(p)) == keys.public_bytes(k)
    with pytest.raises(KeyStoreError):
        keys.load_public(tmp_path / "missing.pub")
    pub = bytearray(keys.public_bytes(k))
    pub[-1] ^= 1
    with pytest.raises(KeyStoreError, match="not on the curve"):
        keys.public_from_bytes(bytes(pub))
    with pytest.raises(KeyStoreError, match="33 or 65"):
        keys.public_from_bytes(bytes(64))


def test_passphrase_from_environment_or_prompt():
    assert keys.passphrase(env={"MPGUARD_PASSPHRASE": "s3cret"}) == b"s3cret"
    with pytest.raises(PassphraseError, match="empty"):
        keys.passphrase(env={"MPGUARD_PASSPHRASE": ""})
    with pytest.raises(PassphraseError, match="no terminal"):
        keys.passphrase(env={}, interactive=False)
    answers = iter(["typed", "typed"])
    assert keys.passphrase(env={}, interactive=True, confirm=True, ask=lambda _: next(answers)) == b"typed"
    answers = iter(["xyzzy-1", "plugh-2"] * 3)  # asked three times, differing each time
    with pytest.raises(PassphraseError, match="differ") as ei:
        keys.passphrase(env={}, interactive=True, confirm=True, ask=lambda _: next(answers))
    assert "xyzzy" not in str(ei.value) and "plugh" not in str(ei.value)


def test_thumbprint_matches_jwcrypto():
    from jwcrypto import jwk

    k = keys.generate()
    from cryptography.hazmat.primitives import serialization

    pem = k.public_key().public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    assert keys.thumbprint(k) == jwk.JWK.from_pem(pem).thumbprint()
