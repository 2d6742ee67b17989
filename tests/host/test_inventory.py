"""The inventory's records and history, on SQLite and on a real PostgreSQL (every test, both).

`inventory` is a fresh inventory per test and backend; `fleet` makes boards with real P-256
keys and X.509 certificates (tests/inventory_db.py).
"""

from __future__ import annotations

import datetime as dt

import pytest

from mpguard import jose, reasons
from mpguard.errors import MpguardError
from mpguard.inventory import DuplicateIdentity, InventoryError


def counts(inv):
    """What a refused write must leave unchanged."""
    return (len(inv.devices()), len(inv.events()), len(inv.revoked()),
            sum(len(inv.certificates(d.ueid)) for d in inv.devices()))


def test_add_and_look_up_a_board(inventory, fleet):
    ident = fleet.identity(1)
    dev = fleet.add(inventory, 1, ident, batch="B-7", station="line-1",
                    provisioned_by="Alice <alice@line-1>")
    kid = jose.thumbprint(ident.key)
    assert dev.ueid == fleet.ueid(1) and dev.thumbprint == kid and dev.mac == fleet.mac(1)
    assert dev.public_key == ident.public_key and dev.batch == "B-7" and dev.station == "line-1"
    assert dev.certificate.serial == ident.serial and dev.certificate.der == ident.cert_der
    assert dev.certificate.not_after == ident.not_after and not dev.certificate.revoked
    assert dev.provisioned_at.tzinfo is not None and dev.provisioned_by == "Alice <alice@line-1>"
    assert inventory.device(fleet.ueid(1)) == dev
    assert inventory.device(bytes.fromhex(fleet.ueid(1).upper())) == dev  # bytes or any-case hex
    assert inventory.device_by_thumbprint(kid) == dev
    assert inventory.device(fleet.ueid(2)) is None
    assert inventory.device_by_thumbprint(jose.thumbprint(fleet.identity(2).key)) is None
    fleet.add(inventory, 2)
    assert [d.ueid for d in inventory.devices()] == [fleet.ueid(1), fleet.ueid(2)]
    assert [d.ueid for d in inventory.devices(batch="B-7")] == [fleet.ueid(1)]
    assert [d.ueid for d in inventory.devices(station="line-1")] == [fleet.ueid(1)]
    (ev,) = inventory.events(fleet.ueid(1))
    assert ev.kind == "provision" and ev.station == "line-1"
    assert ev.data["serial"] == format(ident.serial, "x") and ev.data["thumbprint"] == kid


def test_duplicate_ueid_is_refused_and_changes_nothing(inventory, fleet):
    fleet.add(inventory, 1)
    before = counts(inventory)
    with pytest.raises(DuplicateIdentity) as e:
        fleet.add(inventory, 99, ueid=fleet.ueid(1))  # another key, same UEID
    assert e.value.reason == "duplicate_ueid" and fleet.ueid(1) in str(e.value)
    assert e.value.exit_code == reasons.EXIT_REFUSED
    assert counts(inventory) == before
    assert inventory.device(fleet.ueid(1)).public_key == fleet.identity(1).public_key


def test_duplicate_key_is_a_cloned_board(inventory, fleet):
    fleet.add(inventory, 1)
    before = counts(inventory)
    clone = fleet.identity(1)  # the same key, a fresh certificate, offered by another board
    with pytest.raises(DuplicateIdentity) as e:
        fleet.add(inventory, 2, clone)
    assert e.value.reason == "duplicate_key" and "cloned" in str(e.value)
    assert fleet.ueid(1) in str(e.value)
    assert counts(inventory) == before and inventory.device(fleet.ueid(2)) is None


def test_a_retired_key_stays_the_old_boards(inventory, fleet):
    """After board 1 is re-keyed, its old key offered by board 2 is still a clone."""
    old = fleet.identity(1)
    fleet.add(inventory, 1, old)
    inventory.replace_identity(fleet.ueid(1), public_key=fleet.identity(101).public_key,
                               cert_der=fleet.identity(101).cert_der, provisioned_by="op")
    with pytest.raises(DuplicateIdentity) as e:
        fleet.add(inventory, 2, fleet.identity(1))
    assert e.value.reason == "duplicate_key"


def test_replace_identity_revokes_old_certificate_and_keeps_history(inventory, fleet):
    first = fleet.identity(1)
    fleet.add(inventory, 1, first)
    new = fleet.identity(201)
    dev = inventory.replace_identity(fleet.ueid(1), public_key=new.public_key,
                                     cert_der=new.cert_der, provisioned_by="op@line-2",
                                     station="line-2", note="re-provisioned with --force")
    assert dev.public_key == new.public_key and dev.certificate.serial == new.serial
    assert dev.thumbprint == jose.thumbprint(new.key) and dev.provisioned_by == "op@line-2"
    assert dev.station == "line-2" and not dev.certificate.revoked
    old, cur = inventory.certificates(fleet.ueid(1))
    assert old.serial == first.serial and old.revoked and old.revoke_reason == "superseded"
    assert old.public_key == first.public_key and old.revoked_at >= old.issued_at
    assert cur.serial == new.serial and not cur.revoked
    assert [c.serial for c in inventory.revoked()] == [first.serial]
    assert [e.kind for e in inventory.events(fleet.ueid(1))] == ["provision", "reprovision"]
    ev = inventory.events(fleet.ueid(1), kind="reprovision")[0]
    assert ev.data["revoked"] == [format(first.serial, "x")]
    assert ev.data["old_thumbprint"] == jose.thumbprint(first.key)
    assert inventory.device_by_thumbprint(jose.thumbprint(first.key)) is None
    # a rotation with the same key (a certificate renewed) is recorded as such
    renewed = fleet.identity(201, key=new.key)
    dev = inventory.replace_identity(fleet.ueid(1), public_key=new.public_key,
                                     cert_der=renewed.cert_der, provisioned_by="op",
                                     event="rotate")
    assert dev.certificate.serial == renewed.serial
    assert inventory.events(fleet.ueid(1))[-1].kind == "rotate"
    assert len(inventory.revoked()) == 2


@pytest.mark.parametrize("case", ["unknown board", "another board's key", "serial reused"])
def test_replace_identity_refusals_change_nothing(inventory, fleet, case):
    fleet.add(inventory, 1)
    d2 = fleet.add(inventory, 2)
    before = counts(inventory)
    target, ident, reason = {
        "unknown board": (fleet.ueid(3), fleet.identity(3), "unknown_device"),
        "another board's key": (fleet.ueid(1), fleet.identity(2), "duplicate_key"),
        # a CA bug: a new certificate carrying board 2's serial
        "serial reused": (fleet.ueid(1), fleet.identity(301, serial=d2.certificate.serial),
                          "duplicate_serial"),
    }[case]
    with pytest.raises(InventoryError) as e:
        inventory.replace_identity(target, public_key=ident.public_key, cert_der=ident.cert_der,
                                   provisioned_by="op")
    assert e.value.reason == reason
    assert counts(inventory) == before
    assert not inventory.revoked()


def test_revoke_lists_for_a_crl_and_refuses_twice(inventory, fleet):
    d1 = fleet.add(inventory, 1)
    d2 = fleet.add(inventory, 2)
    c = inventory.revoke(d2.certificate.serial, "keyCompromise", note="key read out over JTAG")
    assert c.revoked and c.revoke_reason == "keyCompromise" and c.ueid == fleet.ueid(2)
    assert [x.serial for x in inventory.revoked()] == [d2.certificate.serial]
    assert inventory.device(fleet.ueid(2)).certificate.revoked
    assert not inventory.device(fleet.ueid(1)).certificate.revoked
    ev = inventory.events(kind="revoke")
    assert len(ev) == 1 and ev[0].ueid == fleet.ueid(2) and ev[0].data["reason"] == "keyCompromise"
    before = counts(inventory)
    for serial, reason, want in [
        (d2.certificate.serial, "superseded", "already_revoked"),
        (d1.certificate.serial, "because I said so", "bad_revoke_reason"),
        (12345, "unspecified", "unknown_certificate"),
    ]:
        with pytest.raises(InventoryError) as e:
            inventory.revoke(serial, reason)
        assert e.value.reason == want
    assert counts(inventory) == before


def test_events_append_filter_and_keep_json(inventory, fleet):
    fleet.add(inventory, 1)
    fleet.add(inventory, 2)
    t0 = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)  # after the provision events
    data = {"app": "blink", "seq": 7, "files": ["main.py"], "ok": True, "nested": {"x": None}}
    e1 = inventory.add_event(fleet.ueid(1), "deploy", data, at=t0, station="desk")
    e2 = inventory.add_event(fleet.ueid(2), "attest", {"verdicts": {"5.1": "ok"}},
                             at=t0 + dt.timedelta(hours=1))
    e3 = inventory.add_event(None, "batch-start", {"batch": "B-1"},
                             at=dt.datetime(2030, 6, 1, 15, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))))
    assert e1.data == data and e1.at == t0 and e1.station == "desk" and e1.ueid == fleet.ueid(1)
    got = inventory.events(fleet.ueid(1), kind="deploy")
    assert got == [e1]
    assert [e.id for e in inventory.events(since=t0 + dt.timedelta(minutes=1))] == [e2.id, e3.id]
    assert inventory.events(kind="batch-start")[0].at == dt.datetime(2030, 6, 1, 13, 0, tzinfo=dt.UTC)
    assert inventory.events(kind="batch-start")[0].ueid is None
    assert len(inventory.events(limit=2)) == 2
    assert [e.kind for e in inventory.events()] == ["provision", "provision", "deploy", "attest",
                                                    "batch-start"]


def test_an_event_for_an_unknown_board_is_refused(inventory, fleet):
    with pytest.raises(InventoryError) as e:
        inventory.add_event(fleet.ueid(5), "deploy", {})
    assert e.value.reason == "unknown_device" and e.value.exit_code == reasons.EXIT_USAGE
    assert inventory.events() == []
    with pytest.raises(InventoryError) as e:
        inventory.certificates(fleet.ueid(5))
    assert e.value.reason == "unknown_device"


def test_errors_are_mpguard_errors(inventory, fleet):
    fleet.add(inventory, 1)
    with pytest.raises(MpguardError):
        fleet.add(inventory, 1)
