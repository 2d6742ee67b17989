"""`mpguard rotate --port P identity` through the CLI on a provisioned virtual board, the
inventory in PostgreSQL: a new key made on the board, the continuity proof checked against
the inventory's record, a new certificate, the old one revoked (CRL), the history kept, the
board's secrets still readable; and a power cut at every flash write of a rotation: after
each the board has a working identity the inventory knows, and the same command finishes."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography import x509
from rotcli import Cli, env_for

import mpguard.sim as simlib
from mpguard import jose
from mpguard.identity import board as idboard
from mpguard.identity import ca as device_ca
from mpguard.inventory import Inventory
from mpguard.link import BoardLink

pytestmark = pytest.mark.timeout(1500)
VALUE = b'{"user": "u", "password": "kept-across-identity"}'


def secret_digest() -> str:
    """SHA-256 of guard.secret("mqtt") as the board reads it (test code on the board: the
    value itself is never printed)."""
    with BoardLink(simlib.get("b").port) as link:
        link.soft_reset()
        out = link.exec("import guard, hashlib, binascii\n"
                        "print(binascii.hexlify(hashlib.sha256(guard.secret('mqtt')).digest()))")
    return out.strip()[2:-1]


@pytest.fixture
def rig(tmp_path, pg_server, monkeypatch):
    env = env_for(tmp_path)
    monkeypatch.setenv("MPGUARD_SIM_DIR", env["MPGUARD_SIM_DIR"])
    cli = Cli(env, tmp_path)
    cli("sim", "start", "--name", "b")
    cli("init", "proj", "--target", "sim")
    cli.cwd = tmp_path / "proj"
    cli.db = pg_server.new_schema()  # type: ignore[attr-defined]
    yield cli
    cli("sim", "stop", "--all")


def consistent(cli: Cli) -> dict:
    """The board's identity is its record's current one; every other certificate revoked."""
    with BoardLink(simlib.get("b").port, connect_timeout=20) as link:
        link.soft_reset()
        st = idboard.status(link)
        cert_der, _ = idboard.certificate(link)
    with Inventory.open(cli.db) as inv:  # type: ignore[attr-defined]
        (dev,) = inv.devices()
        certs = inv.certificates(dev.ueid)
    assert st["state"] == "complete" and dev.thumbprint == st["kid"]
    assert dev.certificate.der == cert_der
    assert [c.revoked for c in certs] == [True] * (len(certs) - 1) + [False]
    return {"kid": st["kid"], "certs": len(certs)}


def test_rotate_identity_through_the_cli(rig):
    cli = rig
    db = cli.db  # type: ignore[attr-defined]
    first = cli.json("provision", "--port", "sim:b", "--db", db)
    (cli.cwd / "v.json").write_bytes(VALUE)
    cli("secret", "set", "--port", "sim:b", "mqtt", "--from-file", "v.json", "--db", db)

    got = cli.json("rotate", "--port", "sim:b", "identity", "--db", db)
    assert got["outcome"] == "rotated" and got["old_kid"] == first["kid"]
    assert got["kid"] != first["kid"] and got["revoked"] == [first["serial"]]
    assert got["serial"] != first["serial"]

    # the inventory: new current key, old certificate revoked (superseded), the history
    with Inventory.open(db) as inv:
        (dev,) = inv.devices()
        assert dev.thumbprint == got["kid"]
        certs = inv.certificates(dev.ueid)
        assert [(format(c.serial, "x"), c.revoke_reason) for c in certs] == [
            (first["serial"], "superseded"), (got["serial"], None)]
        kinds = [e.kind for e in inv.events(dev.ueid)]
        ev = inv.events(dev.ueid, kind="rotate_identity")[0].data
    assert kinds == ["provision", "secret", "rotate_identity", "revoke"]
    assert ev["old_thumbprint"] == first["kid"] and ev["thumbprint"] == got["kid"]
    # the continuity proof kept in the history: the old key signed the new one
    old_pub = certs[0].public_key
    _, payload = jose.verify(ev["proof"], {first["kid"]: old_pub})
    assert json.loads(payload)["new"] == idboard.b64u(certs[1].public_key)
    # the CRL lists the old certificate
    crl = device_ca.crl(cli.cwd)
    assert crl.get_revoked_certificate_by_serial_number(int(first["serial"], 16)) is not None
    assert x509.load_der_x509_certificate(certs[1].der).serial_number == int(got["serial"], 16)

    shown = cli.json("devices", "show", first["ueid"], "--db", db)
    assert [c["state"] for c in shown["certificates"]] == ["revoked", "valid"]
    assert cli.json("provision", "--port", "sim:b", "--db", db)["outcome"] == "already"
    # the secret set before is still readable under the new key (its digest, on the board)
    assert secret_digest() == hashlib.sha256(VALUE).hexdigest()
    text = cli("rotate", "--port", "sim:b", "identity", "--db", db).stdout
    assert text.startswith("identity rotated") and f"(was {got['kid']})" in text
    consistent(cli)


@pytest.mark.slow
def test_power_cut_at_every_flash_write_of_an_identity_rotation(rig):
    cli = rig
    db = cli.db  # type: ignore[attr-defined]
    cli("provision", "--port", "sim:b", "--db", db)
    (cli.cwd / "v.json").write_text('{"user": "u", "password": "survives-power-cuts"}')
    cli("secret", "set", "--port", "sim:b", "mqtt", "--from-file", "v.json", "--db", db)
    w0 = simlib.stats("b")["writes"]
    cli("rotate", "--port", "sim:b", "identity", "--db", db)
    total = simlib.stats("b")["writes"] - w0
    assert total >= 3
    seen: dict[str, int] = {}
    # the state each cut point starts from, checked once: at the end of the point before
    before = consistent(cli)
    for n in range(1, total + 1):
        # the first and last points run `mpguard` as a user does; the points between run the
        # same commands in this process (rotcli.Cli._here: the same main(), without an
        # interpreter's start per command, which was most of this sweep's time)
        here = 1 < n < total
        cuts = simlib.stats("b")["power_cuts"]
        simlib.arm_power_cut("b", after=n, torn=(n % 2 == 0))
        r = cli("rotate", "--port", "sim:b", "identity", "--db", db, code=None, here=here)
        if r.returncode == 0:  # fewer writes this time (littlefs varies by a block or two)
            simlib.disarm_power_cut("b")
            assert n >= total - 2, (n, total, r.stdout)
            seen["finished before the cut"] = seen.get("finished before the cut", 0) + 1
            before = consistent(cli)
            continue
        assert r.returncode == 3, (n, r.stdout, r.stderr)  # the board reset under the host
        simlib.wait_for("b", "power_cuts", cuts + 1, timeout=30)
        # after the cut: a working identity the inventory knows (current, or the old one
        # whose certificate is still valid)
        with BoardLink(simlib.get("b").port, connect_timeout=20) as link:
            link.soft_reset()
            st = idboard.status(link)
            cert_der, _ = idboard.certificate(link)
        with Inventory.open(db) as inv:
            (dev,) = inv.devices()
            mine = [c for c in inv.certificates(dev.ueid) if c.der == cert_der]
        assert st["state"] == "complete", (n, st)
        assert mine and not mine[0].revoked and mine[0].thumbprint == st["kid"], n
        where = "old key" if st["kid"] == before["kid"] else "new key"
        # the same command finishes it (or, cut before the record, rotates afresh)
        again = cli.json("rotate", "--port", "sim:b", "identity", "--db", db, here=here)
        key = f"{where}, recorded {'yes' if dev.thumbprint != before['kid'] else 'no'} -> {again['outcome']}"
        seen[key] = seen.get(key, 0) + 1
        before = consistent(cli)
    print(f"\npower cut at each of {total} block writes of an identity rotation: {seen}")
    assert any(k.startswith("old key, recorded no") for k in seen)
    assert any(k.endswith("resumed") for k in seen)
    # the secret survived every cut (its data key is wrapped under whichever key the board has)
    st = cli.json("secret", "status", "--port", "sim:b")
    assert st["secrets"]["mqtt"]["epoch"] == 1
    assert secret_digest() == hashlib.sha256(b'{"user": "u", "password": "survives-power-cuts"}').hexdigest()
