"""Bad input to the inventory: one named case per refusal, the exact reason, nothing changed.

One inventory per backend for the module (`module_inventory`) holding board 1; after every
refused call it must hold exactly what it held before.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mpguard import reasons
from mpguard.inventory import InventoryError


@pytest.fixture(scope="module")
def inv(module_inventory, fleet):
    fleet.add(module_inventory, 1)
    return module_inventory


def snapshot(inv):
    return (inv.devices(), inv.events(), inv.revoked(), inv.certificates(inv.devices()[0].ueid))


def _other_key_cert(fleet):
    """Board 2's certificate offered with board 3's key."""
    return {"public_key": fleet.identity(3).public_key, "cert_der": fleet.identity(2).cert_der}


# name: (overrides of add_device's arguments, or a callable(fleet) giving them; reason)
BAD_DEVICE = {
    "UEID not hex": ({"ueid": "zz" * 8}, "bad_record"),
    "UEID too short": ({"ueid": "02aabbcc"}, "bad_record"),
    "UEID too long": ({"ueid": "01" + "ab" * 33}, "bad_record"),
    "UEID of unknown type": ({"ueid": "07" + "ab" * 8}, "bad_record"),
    "UEID not a string": ({"ueid": 12345}, "bad_record"),
    "MAC of 5 bytes": ({"mac": "24:0a:c4:00:01"}, "bad_record"),
    "MAC not hex": ({"mac": "24:0a:c4:00:01:zz"}, "bad_record"),
    "empty board kind": ({"kind": ""}, "bad_record"),
    "board kind with a newline": ({"kind": "esp32\nx"}, "bad_record"),
    "chip name too long": ({"chip": "E" * 33}, "bad_record"),
    "no operator": ({"provisioned_by": ""}, "bad_record"),
    "operator over two lines": ({"provisioned_by": "alice\nbob"}, "bad_record"),
    "agent version not text": ({"agent_version": 1}, "bad_record"),
    "batch name too long": ({"batch": "b" * 65}, "bad_record"),
    "public key compressed": (lambda f: {"public_key": f.identity(2).public_key[:33]}, "bad_key"),
    "public key off the curve": (lambda f: {"public_key": b"\x04" + b"\x01" * 64}, "bad_key"),
    "thumbprint of another key": (lambda f: {"thumbprint": "A" * 43}, "bad_record"),
    "certificate not DER": ({"cert_der": b"-----BEGIN CERTIFICATE-----"}, "bad_certificate"),
    "certificate truncated": (lambda f: {"cert_der": f.identity(2).cert_der[:-10]},
                              "bad_certificate"),
    "certificate of another key": (_other_key_cert, "bad_certificate"),
    "serial not the certificate's": ({"cert_serial": 42}, "bad_certificate"),
    "not_after not the certificate's": (
        {"not_after": dt.datetime(2099, 1, 1, tzinfo=dt.UTC)}, "bad_certificate"),
    "not_after without a timezone": ({"not_after": dt.datetime(2099, 1, 1)}, "bad_record"),
}


@pytest.mark.parametrize("case", BAD_DEVICE)
def test_bad_board_record_is_refused(inv, fleet, case):
    fields, reason = BAD_DEVICE[case]
    fields = fields(fleet) if callable(fields) else fields
    before = snapshot(inv)
    with pytest.raises(InventoryError) as e:
        fleet.add(inv, 2, **fields)
    assert e.value.reason == reason, str(e.value)
    assert e.value.exit_code == reasons.EXIT_USAGE
    assert snapshot(inv) == before


BAD_EVENT = {
    "kind empty": (("", {}), "bad_event"),
    "kind with capitals": (("Deploy", {}), "bad_event"),
    "kind too long": (("d" * 33, {}), "bad_event"),
    "data not a dict": (("deploy", ["x"]), "bad_event"),
    "data not JSON": (("deploy", {"when": dt.datetime(2026, 1, 1)}), "bad_event"),
    "data with NaN": (("deploy", {"x": float("nan")}), "bad_event"),
    "data over 64 KiB": (("deploy", {"x": "a" * 70_000}), "bad_event"),
    "a password": (("rotate", {"wifi": {"ssid": "lab", "password": "hunter2"}}), "private_data"),
    "a passphrase": (("rotate", {"Passphrase": "x"}), "private_data"),
    "a PEM private key": (("rotate", {"blob": ["-----BEGIN EC PRIVATE KEY-----\n..."]}),
                          "private_data"),
    "a private_key field": (("provision", {"private_key": "00"}), "private_data"),
}


@pytest.mark.parametrize("case", BAD_EVENT)
def test_bad_event_is_refused(inv, fleet, case):
    (kind, data), reason = BAD_EVENT[case]
    before = snapshot(inv)
    with pytest.raises(InventoryError) as e:
        inv.add_event(fleet.ueid(1), kind, data)
    assert e.value.reason == reason, str(e.value)
    assert snapshot(inv) == before


BAD_CALLS = {
    "event at without a timezone": (
        lambda inv, f: inv.add_event(f.ueid(1), "deploy", {}, at=dt.datetime(2026, 1, 1)),
        "bad_record"),
    "events since without a timezone": (
        lambda inv, f: inv.events(since=dt.datetime(2026, 1, 1)), "bad_record"),
    "look up a malformed UEID": (lambda inv, f: inv.device("not hex"), "bad_record"),
    "revoke with a made-up reason": (
        lambda inv, f: inv.revoke(inv.device(f.ueid(1)).certificate.serial, "lost it"),
        "bad_revoke_reason"),
    "revoke serial 0": (lambda inv, f: inv.revoke(0), "unknown_certificate"),
    "replace with a made-up reason": (
        lambda inv, f: inv.replace_identity(
            f.ueid(1), public_key=f.identity(9).public_key, cert_der=f.identity(9).cert_der,
            provisioned_by="op", reason="because"), "bad_revoke_reason"),
    "replace with a bad event kind": (
        lambda inv, f: inv.replace_identity(
            f.ueid(1), public_key=f.identity(9).public_key, cert_der=f.identity(9).cert_der,
            provisioned_by="op", event="Re provision"), "bad_event"),
    "replace with a note of many lines": (
        lambda inv, f: inv.replace_identity(
            f.ueid(1), public_key=f.identity(9).public_key, cert_der=f.identity(9).cert_der,
            provisioned_by="op", note="a\nb"), "bad_record"),
    "replace with a P-384 key's certificate": (
        lambda inv, f: inv.replace_identity(
            f.ueid(1), public_key=f.identity(9).public_key,
            cert_der=f.identity(9, key=ec.generate_private_key(ec.SECP384R1())).cert_der,
            provisioned_by="op"), "bad_certificate"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_call_is_refused(inv, fleet, case):
    call, reason = BAD_CALLS[case]
    before = snapshot(inv)
    with pytest.raises(InventoryError) as e:
        call(inv, fleet)
    assert e.value.reason == reason, str(e.value)
    assert snapshot(inv) == before
