"""`make demo` / `mpguard demo`: the mpguard story on a virtual board, through the real CLI.

1. start a virtual ESP32 (`mpguard sim start`);
2. `mpguard init` a project (release key and device CA key encrypted with a demo passphrase);
3. `mpguard provision`: the agent, then an identity made on the board, a certificate from
   the project's device CA and an inventory record; run again, it changes nothing;
4. build and deploy app v1, then v2 (both confirm themselves; the inventory records them);
5. deploy a broken v3: it crashes on every trial boot and the board rolls back to v2;
6. deploy a forged bundle (v4 signed by a key the board does not trust): refused, nothing
   written;
7. attest the board (a signed posture token, judged by the default policy; HTML and JUnit
   reports), then the fleet report from the inventory;
8. rotate the app's MQTT password against a real broker (amqtt) on 127.0.0.1: the app on the
   board connects with its `mqtt` secret; the broker accepts the old and a new password while
   `mpguard rotate --test` has the board test the new one before committing it; the broker
   retires the old one and refuses it, accepts the new one, and the app connects with it.
   Without amqtt (the `test` extra, which `make demo` installs) this step says so and is
   skipped. No password is ever printed: only its length.

Everything happens in ./demo-project (recreated each run); the virtual board lives in a
temporary sims folder and is stopped at the end, the broker too (also on an error or Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .. import reasons

GOOD = 'import guard\nprint("hello from app {v}")\nguard.confirm()\n'
BROKEN = 'print("app {v} starting")\nraise RuntimeError("app {v} is broken")\n'
CONNECTED, REFUSED = b"APP: mqtt connected", b"APP: mqtt refused"


def _mpguard() -> list[str]:
    exe = Path(sys.executable).parent / "mpguard"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mpguard"]


class Story:
    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.env = env

    def run(self, *args: str, ok: tuple[int, ...] = (0,), quiet: bool = False) -> str:
        shown = " ".join(shlex.quote(a) for a in args)
        print(f"\n$ mpguard {shown}", flush=True)
        proc = subprocess.run(_mpguard() + list(args), cwd=self.root, env=self.env,
                              capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        if not quiet:
            print(out.rstrip())
        print(f"  (exit code {proc.returncode})")
        if proc.returncode not in ok:
            raise SystemExit(f"demo: step failed: mpguard {shown}")
        return proc.stdout

    def app(self, name: str, src: str, version: str) -> str:
        d = self.root / name
        d.mkdir(exist_ok=True)
        (d / "main.py").write_text(src.format(v=version))
        return name


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    p = sub.add_parser("demo", help=summary, description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_ERROR))
    p.add_argument("--dir", default="demo-project", help="project folder (recreated)")
    p.set_defaults(func=lambda a: run(Path(a.dir)))


def run(root: Path) -> int:
    root = root.resolve()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    sims = tempfile.mkdtemp(prefix="mpguard-demo-sims-")
    env = dict(os.environ, MPGUARD_SIM_DIR=sims, MPGUARD_PASSPHRASE="demo passphrase")
    s = Story(root, env)
    print("mpguard demo: signed updates on a virtual ESP32 board")
    print(f"(project in {root}; the demo passphrase comes from MPGUARD_PASSPHRASE)")
    try:
        started = s.run("sim", "start", "--name", "demo")
        port = started.strip().splitlines()[-1]  # `sim start` prints the board's port last
        s.run("init", ".", "--target", "sim")

        print("\n== 0. identity: the board makes its key, the project's CA certifies it")
        s.run("provision", "--port", "sim:demo")
        s.run("provision", "--port", "sim:demo")  # again: already provisioned, nothing changes
        s.run("devices", "list")

        print("\n== 1. app v1 and v2: genuine, new, meant for this board -> installed, confirmed")
        for v in ("1.0.0", "2.0.0"):
            s.app(f"app-{v}", GOOD, v)
            s.run("release", "build", f"app-{v}", "--app", "demo", "--version", v,
                  "-o", f"demo-{v}.bundle")
            s.run("deploy", "--port", "sim:demo", f"demo-{v}.bundle")

        print("\n== 2. app v3 crashes on every trial boot -> the board rolls back to v2")
        s.app("app-3.0.0", BROKEN, "3.0.0")
        s.run("release", "build", "app-3.0.0", "--app", "demo", "--version", "3.0.0",
              "-o", "demo-3.0.0.bundle")
        out = s.run("deploy", "--port", "sim:demo", "demo-3.0.0.bundle", "--json",
                    ok=(5,), quiet=True)
        res = json.loads(out)
        # what happened comes from the agent's state (update.status), read after the trial;
        # the board's console output is shown as an extra
        st, last = res["status"], res["status"]["last"]
        print(f"  agent state | last update: {last['result']} {last['app']} {last['ver']} "
              f"(sequence {last['seq']}) after {last.get('boots')} trial boots")
        for line in res["details"]:
            print(f"  {line}")
        print(f"  outcome: {res['outcome']}; the board runs {st['app']} {st['ver']} "
              f"(seq {st['seq']})")

        print("\n== 3. a forged v4, signed by a key the board does not trust -> refused")
        forged = root / "attacker"
        s.run("init", str(forged), "--target", "sim", "--no-passphrase", quiet=True)
        s.app("app-4.0.0", GOOD, "4.0.0")
        s.run("release", "build", "app-4.0.0", "--app", "demo", "--version", "4.0.0",
              "--project", str(forged), "--seq", "100", "-o", "forged-4.0.0.bundle")
        s.run("release", "verify", "forged-4.0.0.bundle", ok=(4,))
        s.run("deploy", "--port", "sim:demo", "forged-4.0.0.bundle", ok=(4,))
        ueid = json.loads(s.run("devices", "list", "--json", quiet=True))["devices"][0]["ueid"]
        s.run("devices", "show", ueid)
        print("\nThe board still runs the confirmed v2; every refusal left its files unchanged.")

        print("\n== 4. attestation: the board signs its posture facts, the policy judges them")
        s.run("attest", "--port", "sim:demo", "--html", "attest.html", "--junit", "attest.xml",
              ok=(reasons.EXIT_OK, reasons.EXIT_WARN, reasons.EXIT_FAIL))
        if "attest.html" in os.listdir(root):
            s.run("report", "--html", "fleet.html",
                  ok=(reasons.EXIT_OK, reasons.EXIT_WARN, reasons.EXIT_FAIL))
            print(f"\nReports: {root / 'attest.html'}, {root / 'fleet.html'}, {root / 'attest.xml'}"
                  "\n(a stock virtual ESP32 fails the default policy: JTAG is open; the hints say how"
                  " to fix each rule)")
        else:
            print("  (this build lacks device identity or the inventory, which attestation needs:"
                  " docs/attest.md)")

        rotation(s, port)
    finally:
        subprocess.run(_mpguard() + ["sim", "stop", "--all"], env=env, capture_output=True)
        shutil.rmtree(sims, ignore_errors=True)
    return 0


def app_says(port: str) -> str:
    """Restart the board and return the app's line about MQTT (read from its console)."""
    from ..link import BoardLink

    with BoardLink(port) as link:
        out = link.hard_reset(wait=30, until_any=(CONNECTED, REFUSED))
    lines = [ln.strip() for ln in out.decode(errors="replace").splitlines() if "APP: mqtt" in ln]
    return lines[-1] if lines else "(the app printed nothing about MQTT within 30 s)"


def _value_file(folder: Path, name: str, password: str) -> str:
    """The secret's value in a file only its owner reads (`--from-file`: never on a command
    line); the path relative to the project, where the commands run."""
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"user": "board", "password": password}, f)
    return f"{folder.name}/{name}"


def rotation(s: Story, port: str) -> None:
    """Step 5: the MQTT password rotated against a real broker on 127.0.0.1 (docs/rotate.md).
    What is shown comes from the broker's answers and the board's console; the passwords
    are made here, written to 0600 files for `--from-file` and removed at the end."""
    from .. import mqtt  # here, not at the top: every `mpguard` command imports this module

    why = mqtt.available()
    if why:
        print(f"\n== 5. MQTT password rotation skipped: {why}; the demo's MQTT broker needs it "
              "(pip install 'mpguard[test]'; `make demo` installs it)")
        return
    print("\n== 5. rotation: the app's MQTT password changes; the board tests the new one "
          "first, then the broker refuses the old one")
    folder = s.root / "secrets"  # the operator's value files, removed below
    broker_dir = Path(tempfile.mkdtemp(prefix="mpguard-demo-broker-"))
    old, new = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    try:
        folder.mkdir(mode=0o700)
        with mqtt.Broker(broker_dir) as broker:
            broker.users({"board": [old]})
            print(f"  broker | amqtt on 127.0.0.1:{broker.port}, password authentication; "
                  f"user board with its first password ({len(old)} chars)")
            s.run("secret", "set", "--port", "sim:demo", "mqtt", "--from-file",
                  _value_file(folder, "mqtt-1.json", old))
            app = s.root / "app-5.0.0"
            app.mkdir()
            (app / "main.py").write_text(mqtt.app_main(broker.port))
            mqtt.umqtt_lib(app)  # micropython-lib's MQTT client, compiled, in the app's lib/
            s.run("release", "build", app.name, "--app", "demo", "--version", "5.0.0",
                  "-o", "demo-5.0.0.bundle")
            s.run("deploy", "--port", "sim:demo", "demo-5.0.0.bundle")
            _app_connects(port, "the app, restarted, connects with the first password")

            broker.users({"board": [old, new]})
            print(f"\n  broker | the service accepts the first and a new password ({len(new)} "
                  "chars) while the board rotates")
            s.run("rotate", "--port", "sim:demo", "mqtt", "--from-file",
                  _value_file(folder, "mqtt-2.json", new), "--test")
            broker.users({"board": [new]})
            print("\n  broker | the operator retires the first password at the service")
            for label, pw, want_ok in (("old", old, False), ("new", new, True)):
                code = broker.connect("board", pw)
                answer = mqtt.CONNACK.get(code, "an answer MQTT 3.1.1 does not define")
                print(f"  broker | CONNECT as board with the {label} password ({len(pw)} chars): "
                      f"CONNACK {code}, {answer}")
                if (code == 0) != want_ok:
                    raise SystemExit(f"demo: step failed: the broker's answer to the {label} "
                                     f"password: {answer}")
            _app_connects(port, "the app, restarted, connects with the new password (the only "
                          "one the broker accepts)")
        s.run("secret", "status", "--port", "sim:demo")
        print("\nThe board took the new password only after its own test against the broker "
              "passed;\nno password was printed or put on a command line (only their lengths).")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(broker_dir, ignore_errors=True)


def _app_connects(port: str, what: str) -> None:
    said = app_says(port)
    print(f"  board  | {what}:\n    | {said}")
    if said != CONNECTED.decode():
        raise SystemExit(f"demo: step failed: {what}: {said}")
