"""One deploy attempt that a power-cut sweep ends the moment the power is cut (a helper
module, not tests).

The attempt runs in a process of its own, so that the test can end it at once, whatever it
is doing (SIGKILL), as the power cut ends the board's side. That process is forked by
multiprocessing's fork server, which imported this module (and with it mpguard's link, deploy
and sim) once: an attempt costs a fork, not a new interpreter importing mpguard again. The
server is one single-threaded process per test process (started at the first attempt, it
ends with the test process), so a fork takes no lock another thread of the test holds
(the sweep's points run in threads, tests/cuts.py) and no file another thread has open.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from multiprocessing.connection import Connection, wait
from pathlib import Path

import mpguard.sim as simlib
from mpguard.link import BoardLink
from mpguard.updates import deploy

_CTX = multiprocessing.get_context("forkserver")
# "__main__": the server imports the test process's main script once (pytest's, without xdist),
# which each fork would otherwise run again to set up its __main__.
_CTX.set_forkserver_preload(["__main__", __name__])


def _attempt(conn: Connection, env: dict[str, str], port: str, name: str, n: int, bundle_file: str) -> None:
    """In the fork: arm a cut at block write `n`, deploy; send back how the deploy ended (only
    read when it ended without the cut). Its timeouts only bound a board that hangs: no
    passing run ever reaches them."""
    os.environ.clear()
    os.environ.update(env)  # the test's sim folder (the server's environment is the first test's)
    try:
        with BoardLink(port, timeout=120, connect_timeout=120) as link:
            simlib.arm_power_cut(name, after=n, torn=(n % 2 == 0))
            out = deploy.deploy(link, Path(bundle_file).read_bytes(), wait=120, timeout=120).outcome
    except BaseException:  # noqa: BLE001  (whatever ended it is the test's message)
        out = traceback.format_exc()
    conn.send(out)


def deploy_until_cut(name: str, port: str, n: int, bundle_file: Path) -> dict:
    """Arm a cut at block write `n` and deploy until the power is cut; returns the stats.

    The attempt ends on the cut (an event), never on a timer: a host that gave up after a few
    seconds of silence left the install unfinished under load, so write `n` never came and
    the cut never happened (the old flake). If the deploy ends by itself without a cut, the
    stats (exact when read) say so and the test fails with how the deploy ended.
    """
    cuts = simlib.stats(name)["power_cuts"]
    rx, tx = _CTX.Pipe(duplex=False)
    proc = _CTX.Process(target=_attempt, args=(tx, dict(os.environ), port, name, n, str(bundle_file)),
                        daemon=True)
    try:
        proc.start()
        tx.close()
        while True:
            ended = proc.exitcode is not None
            st = simlib.stats(name)  # every event the board sent until now is counted
            if st["power_cuts"] > cuts or ended:
                break
            wait([proc.sentinel], 0.02)
    finally:
        proc.kill()
        proc.join()  # reaped: its end of the port is closed, the port can be opened again
        try:
            out = rx.recv() if rx.poll() else f"(no answer; exit code {proc.exitcode})"
        except (EOFError, OSError) as e:  # killed while it answered
            out = f"(answer cut short: {e!r})"
        rx.close()  # not proc.close(): another thread's Process.start() may still look at it
    assert st["power_cuts"] == cuts + 1, f"cut {n}: the deploy ended without one power cut:\n{out}"
    return st

