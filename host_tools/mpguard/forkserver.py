"""The client of the unix port's fork server (sim/launch.py --serve, decisions/0023): a
process that loaded the port's library once and forks a virtual board's boot, or a one-off
`micropython` run (mpguard.unixport.run), on request. It imports nothing of mpguard, so
that both the sim and unixport use it without importing each other.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

LAUNCH = str(Path(__file__).with_name("sim") / "launch.py")


def die_with_parent() -> None:
    # The child dies with the thread that started it (a supervisor's one thread), whatever
    # kills it (no orphan interpreters).
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def this_environments(micropython: str) -> bool:
    """`micropython` is this environment's console script of the unix port package (whose
    library launch.py loads)."""
    return Path(micropython).parent == Path(sys.executable).parent


def child_env() -> dict[str, str]:
    """This environment without MICROPYPATH (a boot's sys.path is the firmware's)."""
    return {k: v for k, v in os.environ.items() if k != "MICROPYPATH"}


class Zygote:
    """launch.py as a fork server (`--serve`: a sim supervisor's, or unixport's in a process
    that runs programs on the port), over a socketpair: no path on disk, so no other process
    can ask it for anything. `script`: another server of the same protocol's start (its
    "--serve FD" and "ok"): fuse/efserver.py, with its output to /dev/null (`quiet`)."""

    def __init__(self, d: Path, *, pdeathsig: bool = True, script: str = LAUNCH,
                 quiet: bool = False):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ok = False  # serving (its "ok" came, nothing failed since)
        out = subprocess.DEVNULL if quiet else None
        try:
            self.proc = subprocess.Popen(
                [sys.executable, script, "--serve", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                pass_fds=(theirs.fileno(),),
                env=child_env(),
                cwd=str(d),
                preexec_fn=die_with_parent if pdeathsig else None,
            )
        except BaseException:
            self.sock.close()
            raise
        finally:
            theirs.close()
        self.sock.settimeout(30)

    @classmethod
    def start(cls, d: Path, micropython: str, *, pdeathsig: bool = True) -> Zygote | None:
        """A fork server for the sim in `d`, or None where boots cannot go through one (the
        library lacks what launch.py calls, or `micropython` is not this environment's).
        `pdeathsig`: it is killed when the thread that starts it ends (a supervisor's one
        thread); else it ends when this process's end of the socket closes (at its exit)."""
        if not this_environments(micropython):
            return None
        try:
            z = cls(d, pdeathsig=pdeathsig)
        except OSError:
            return None
        try:
            z.ok = z._reply() == b"ok"
        except OSError:
            pass
        if not z.ok:
            z.close()
            return None
        return z

    def _ask(self, req: dict[str, Any], fds: list[int] | None = None) -> bytes:
        socket.send_fds(self.sock, [json.dumps(req).encode()], fds or [])
        return self._reply()

    def _reply(self) -> bytes:
        reply = self.sock.recv(64)
        if not reply:
            raise ConnectionError("the sim's fork server ended")
        return reply

    def fork(self, args: list[str], fds: list[int]) -> Forked:
        """A boot with these pipes: stdin, stdout (and stderr), events, Ctrl-C."""
        return Forked(self, int(self._ask({"boot": args}, fds)))

    def run(self, args: list[str], fds: list[int], env: dict[str, str], cwd: str) -> Forked:
        """`micropython ARGS` with these stdin, stdout and stderr, in `cwd` with `env`."""
        return Forked(self, int(self._ask({"run": args, "env": env, "cwd": cwd}, fds)))

    def wait(self, pid: int) -> int:
        """Reap the boot `pid`; its exit code (-N: killed by signal N)."""
        return int(self._ask({"wait": pid}))

    def close(self) -> None:
        self.ok = False
        self.sock.close()  # it ends at EOF
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Forked:
    """A boot forked by the Zygote, with what Child uses of a Popen. Its pid cannot be another
    process's before wait(): the Zygote reaps it only when asked."""

    def __init__(self, zygote: Zygote, pid: int):
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # as Popen's
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self) -> int:
        if self.returncode is None:
            try:
                self.returncode = self.zygote.wait(self.pid)
            except OSError:  # the Zygote is gone, and the boot with it (PR_SET_PDEATHSIG)
                self.zygote.close()
                self.returncode = -signal.SIGKILL
        return self.returncode
