"""A review's finds in the host side of rotation and deploy (2026-11-27), each a test that
failed before its fix: no secret and no new certificate for a board whose certificate was
revoked (its key is in someone else's hands), and a confirmed deploy leaves a provisioned
board running its app (recording the deploy asked the board again and stopped the app)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(600)


def test_no_secret_to_a_board_whose_certificate_was_revoked(tmp_path, sim_dir):
    """A board revoked for keyCompromise (`devices revoke --reason keyCompromise`): its
    identity key is known to be in someone else's hands. `secret set` / `rotate NAME` must not
    encrypt a new credential to that key (the inventory says it is revoked), yet they do."""
    from rotcli import provisioned

    cli = provisioned(tmp_path, sim_dir, "rv")
    dev = cli.json("devices", "list")["devices"][0]
    cli("devices", "revoke", dev["ueid"], "--reason", "keyCompromise")
    v = tmp_path / "v.json"
    v.write_text('{"user": "board", "password": "fresh-after-compromise"}')
    for argv in (["secret", "set", "--port", "sim:rv", "mqtt"], ["rotate", "--port", "sim:rv", "mqtt"]):
        r = cli(*argv, "--from-file", str(v), code=None)
        assert r.returncode == 4 and "revoked" in r.stderr, (argv, r.stdout, r.stderr)
    assert "fresh-after-compromise" not in r.stdout + r.stderr


def test_deploy_leaves_a_provisioned_board_running_its_app(tmp_path, sim_dir):
    """docs/deploy.md step 6: "Confirmed or rolled back: the board is reset once more and left
    running its app". In a project whose inventory knows the board, cli/deploy.py's _record
    runs after deploy()'s reboot: records.record_board_event soft-resets the board (which
    interrupts the app it just started) and the link closes into the friendly REPL: the app
    no longer runs."""
    import time

    import serial
    from rotcli import provisioned

    from mpguard import sim as simlib

    def app_output(port: str) -> bytes:
        """What the board prints for 3 s, or until the app's first `tick` (it prints one
        every 0.2 s while it runs): the checks below look for a `tick` only, so reading on
        after one came changed nothing but the time (2 x 3 s every run)."""
        with serial.Serial(port, 115200, timeout=0.2) as s:
            end, out = time.monotonic() + 3, b""
            while time.monotonic() < end and b"tick" not in out:
                out += s.read(256)
        return out

    cli = provisioned(tmp_path, sim_dir, "dp")
    app = cli.cwd / "app"
    app.mkdir()
    (app / "main.py").write_text(
        "import guard, time\nguard.confirm()\nwhile True:\n    print('tick')\n    time.sleep(0.2)\n")
    cli("release", "build", "app", "--app", "demo", "--version", "1.0.0", "-o", "a.bundle")
    r = cli("deploy", "--port", "sim:dp", "a.bundle", "--wait", "20")
    assert r.stdout.startswith("confirmed"), r.stdout
    seen = app_output(simlib.get("dp").port)
    # control: the same board, a deploy outside the project (nothing recorded): the app runs
    cli("release", "build", "app", "--app", "demo", "--version", "2.0.0", "-o", "b.bundle")
    cli.cwd = tmp_path
    r2 = cli("deploy", "--port", "sim:dp", str(tmp_path / "proj" / "b.bundle"), "--wait", "20")
    control = app_output(simlib.get("dp").port)
    assert b"tick" in control, ("control failed", r2.stdout, control[-200:])
    assert b"tick" in seen, f"the app does not run after a confirmed deploy; the board printed {seen[-200:]!r}"


def test_no_new_certificate_for_a_board_revoked_for_key_compromise(tmp_path, sim_dir):
    """`rotate identity` on a board whose current certificate was revoked (keyCompromise):
    the continuity proof is signed by the compromised key, so it proves nothing; the host
    still issues and records a new, valid certificate (the board is un-revoked)."""
    from rotcli import provisioned

    cli = provisioned(tmp_path, sim_dir, "rk")
    dev = cli.json("devices", "list")["devices"][0]
    cli("devices", "revoke", dev["ueid"], "--reason", "keyCompromise")
    r = cli("rotate", "--port", "sim:rk", "identity", code=None)
    assert r.returncode == 4 and "revoked" in r.stderr, (r.stdout, r.stderr)
    certs = cli.json("devices", "show", dev["ueid"])["certificates"]
    assert [c["state"] for c in certs] == ["revoked"]  # no new certificate was issued
