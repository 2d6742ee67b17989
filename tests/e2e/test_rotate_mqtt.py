"""Credential rotation against a real service, through the CLI as a user runs it: an MQTT
broker (amqtt) on 127.0.0.1 with password authentication, a provisioned virtual board whose
app connects with its `mqtt` secret through micropython-lib's umqtt.simple, the inventory in
PostgreSQL.

1. `secret set`: the app connects with the first password.
2. `rotate --test` with a password the broker does not know: the board's test is refused by
   the broker, the rotation reverts, the board keeps epoch 1 and the app still connects.
3. the service accepts old and new; `rotate --test`: the board's test connects with the new
   one, commits (epoch 2); the service retires the old one: the broker refuses it, and the
   app (restarted by the rotation) connects with the new one.
4. no value appears in any CLI output, the sims' logs, the project folder or the inventory.
"""

from __future__ import annotations

import json

import pytest
from rotcli import Cli, env_for, find_values, host_files, inventory_text, make_app

import mpguard.sim as simlib
from mpguard.link import BoardLink
from mpguard.mqtt import Broker

pytestmark = pytest.mark.timeout(600)

OLD = {"user": "board", "password": "first-mqtt-pw-7Hq2"}
NEW = {"user": "board", "password": "second-mqtt-pw-Z9x4"}
WRONG = {"user": "board", "password": "never-valid-pw-K3m8"}
# `rotate --test` waits this long after the board's reset for the app to register its test
# (the default, 5 s, leaves room for a real board's Wi-Fi; `mpguard demo`, and with it
# test_cli_board's demo test, keeps the default). This app registers it as its first
# statement: on the virtual board its "APP: mqtt" line, printed after it, comes 0.16 s
# after the reset. A test that is not registered in time fails the test (outcome
# "no_test"), never passes it.
SETTLE = ("--settle", "2")


def app_says(port: str) -> str:
    """Restart the board and return the app's line about MQTT."""
    with BoardLink(port) as link:
        out = link.hard_reset(wait=30, until_any=(b"APP: mqtt connected", b"APP: mqtt refused"))
    text = out.decode(errors="replace")
    line = [ln for ln in text.splitlines() if "APP: mqtt" in ln]
    assert line, text
    return line[-1].strip()


@pytest.mark.slow
def test_mqtt_password_rotation_with_a_real_broker(tmp_path, pg_server, monkeypatch):
    env = env_for(tmp_path)
    monkeypatch.setenv("MPGUARD_SIM_DIR", env["MPGUARD_SIM_DIR"])
    cli = Cli(env, tmp_path)
    secrets_dir = tmp_path / "in"  # the operator's value files: not searched
    secrets_dir.mkdir()
    files = {}
    for name, v in (("old", OLD), ("new", NEW), ("wrong", WRONG)):
        files[name] = secrets_dir / f"{name}.json"
        files[name].write_text(json.dumps(v))
    db = pg_server.new_schema()
    try:
        with Broker(tmp_path / "broker") as broker:
            broker.users({"board": [OLD["password"]]})
            cli("sim", "start", "--name", "b")
            port = simlib.get("b").port
            cli("init", "proj", "--target", "sim")
            cli.cwd = tmp_path / "proj"
            cli("provision", "--port", "sim:b", "--db", db)
            # 1. the first password, then the app
            got = cli.json("secret", "set", "--port", "sim:b", "mqtt", "--from-file",
                           str(files["old"]), "--db", db)
            assert (got["outcome"], got["epoch"], got["previous_epoch"]) == ("set", 1, 0)
            make_app(cli.cwd / "app", broker.port)
            cli("release", "build", "app", "--version", "1.0.0", "-o", "app.bundle")
            assert cli.json("deploy", "--port", "sim:b", "app.bundle", "--db", db)["outcome"] \
                == "confirmed"
            assert app_says(port) == "APP: mqtt connected"

            # 2. a wrong new password: the board's test is refused by the broker, reverted
            bad = cli.json("rotate", "--port", "sim:b", "mqtt", "--from-file",
                           str(files["wrong"]), "--test", *SETTLE, "--db", db, code=4)
            assert bad["outcome"] == "reverted" and bad["reason"] == "test_failed"
            assert bad["test"] == {"ok": False, "why": "MQTTException"}
            assert bad["epoch"] == 1 and bad["exit_code"] == 4
            st = cli.json("secret", "status", "--port", "sim:b")
            assert st["secrets"]["mqtt"]["epoch"] == 1 and st["secrets"]["mqtt"]["staged"] is None
            assert app_says(port) == "APP: mqtt connected"  # still the old password

            # 3. the service accepts both; the board tests the new one, commits
            broker.users({"board": [OLD["password"], NEW["password"]]})
            good = cli.json("rotate", "--port", "sim:b", "mqtt", "--from-file",
                            str(files["new"]), "--test", *SETTLE, "--db", db)
            assert good["outcome"] == "committed" and good["test"] == {"ok": True, "why": None}
            assert (good["epoch"], good["previous_epoch"], good["restarted"]) == (2, 1, True)
            text = cli("secret", "status", "--port", "sim:b").stdout
            assert "mqtt" in text and "epoch 2" in text and "staged" not in text
            broker.users({"board": [NEW["password"]]})  # the operator retires the old one
            assert broker.connect("board", OLD["password"]) == 5  # not authorized
            assert broker.connect("board", NEW["password"]) == 0
            assert app_says(port) == "APP: mqtt connected"  # with the new one

            # the inventory has the history, never a value
            from mpguard.inventory import Inventory

            with Inventory.open(db) as inv:
                (dev,) = inv.devices()
                ev = [(e.data["name"], e.data["outcome"], e.data["epoch"])
                      for e in inv.events(dev.ueid, kind="secret")]
            assert ev == [("mqtt", "set", 1), ("mqtt", "reverted", 1), ("mqtt", "committed", 2)]

        # 4. no value anywhere on the host side
        blobs = host_files(tmp_path, skip=(secrets_dir,))
        blobs["CLI output"] = "\n".join(cli.transcript).encode()
        blobs["inventory (PostgreSQL)"] = inventory_text(db)
        values = {k: v["password"].encode() for k, v in (("old", OLD), ("new", NEW),
                                                        ("wrong", WRONG))}
        assert any(k.endswith(".img") for k in blobs) and any("log" in k for k in blobs)
        assert find_values(blobs, values) == []
    finally:
        cli("sim", "stop", "--all")
