"""The supervisor of one virtual board: `python -m mpguard.sim.supervisor STATE_DIR READY_FD`.

One detached process per sim. It owns a pseudo-terminal (the board's serial port) and runs
the firmware (`firmware/simboot.py`) on the MicroPython unix port as a child with pipes:
- bytes from the terminal go to the child's stdin, bytes from its stdout to the terminal,
  optionally at `baud / 10` bytes per second each way (a UART, 8N1);
- a Ctrl-C byte while user code runs (and kbd_intr is on) becomes SIGINT to the child,
  otherwise it passes through as data (the REPL reads it), as a board's UART ISR does;
- the child reports events on a side pipe (see firmware/_simfw.py); the supervisor keeps
  the flash wear counters in `stats.json` and restarts the child on soft reset, hard reset
  and power cut (with what a board prints), so every boot has a fresh heap;
- it holds `lock` (flock) while it lives: that is how `list` and `stop` know it runs.
SIGTERM stops it (the child dies with it: PR_SET_PDEATHSIG); SIGUSR1 asks for stats.json.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import tty
from collections import deque
from pathlib import Path
from typing import Any

from . import state

_ROM_BANNER = (
    "ets Jul 29 2019 12:21:46\r\n\r\nrst:{rst},boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
    "mpguard virtual board {name}: {kind}, flash {flash} KiB, heap {heap} KiB\r\n"
)
_RST = {1: "0x1 (POWERON_RESET)", 2: "0xc (SW_CPU_RESET)"}
_OUT_MAX = 256 * 1024  # device output kept while nobody reads the port; older is dropped
_CHUNK = 4096


def _pdeathsig() -> None:
    # The child dies with the supervisor, whatever kills it (no orphan interpreters).
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Bucket:
    """A token bucket: `rate` bytes per second (None: unlimited)."""

    def __init__(self, rate: float | None):
        self.rate = rate
        self.tokens = 0.0
        self.t = time.monotonic()
        self.cap = max(16.0, rate / 100) if rate else 0.0

    def allow(self, want: int) -> int:
        if not self.rate:
            return want
        now = time.monotonic()
        self.tokens = min(self.cap, self.tokens + (now - self.t) * self.rate)
        self.t = now
        n = min(want, int(self.tokens))
        self.tokens -= n
        return n

    def wait(self) -> float:
        if not self.rate:
            return 0.0
        return max(0.0, (1 - self.tokens) / self.rate)


class Supervisor:
    def __init__(self, d: Path, ready_fd: int):
        self.d = d
        self.ready_fd = ready_fd
        self.cfg = json.loads((d / state.CONFIG).read_text())
        self.stats = state.read_stats(d)
        self.stats_gen = self.stats.get("gen", 0)
        self.sel = selectors.DefaultSelector()
        self.out: deque[bytes] = deque()  # device -> terminal
        self.out_len = 0
        self.inq = bytearray()  # terminal -> device
        rate = self.cfg["baud"] / 10 if self.cfg.get("baud") else None
        self.tx = _Bucket(rate)
        self.rx = _Bucket(rate)
        self.child: subprocess.Popen[bytes] | None = None
        self.ctl_r = -1
        self.ctl_buf = b""
        self.up = False
        self.busy = False
        self.kbd = True
        self.pending: str | None = None  # "cut" or "reset" announced before the child dies
        self.raw = False
        self.cause = 1
        self.stop = False
        self.want_stats = False
        self.dirty = False
        self.ready_sent = False
        self.boot_times: deque[float] = deque(maxlen=5)
        self.boot_reads = 0
        self.lock_ino = -1

    # --- terminal ---------------------------------------------------------------------

    def open_pty(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self.slave)
        link = self.d / state.TTY_LINK
        try:
            link.unlink()
        except FileNotFoundError:
            pass
        link.symlink_to(self.port)
        self.sel.register(self.master, selectors.EVENT_READ, "pty")

    def emit(self, data: bytes) -> None:
        if not data:
            return
        self.out.append(data)
        self.out_len += len(data)
        while self.out_len > _OUT_MAX:
            self.out_len -= len(self.out.popleft())

    def flush_out(self) -> None:
        while self.out:
            n = self.tx.allow(len(self.out[0]))
            if n <= 0:
                return
            chunk = self.out[0][:n]
            try:
                w = os.write(self.master, chunk)
            except BlockingIOError:
                self.tx.tokens += n
                return
            except OSError as e:
                if e.errno == errno.EIO:
                    return
                raise
            self.tx.tokens += n - w
            self.out_len -= w
            if w == len(self.out[0]):
                self.out.popleft()
            else:
                self.out[0] = self.out[0][w:]

    def feed_child(self) -> None:
        if not self.inq or self.child is None or self.child.stdin is None:
            return
        n = self.rx.allow(len(self.inq))
        if n <= 0:
            return
        data = bytes(self.inq[:n])
        del self.inq[:n]
        while data:
            i = data.find(b"\x03")
            if i < 0 or not (self.up and self.busy and self.kbd):
                self._write_child(data)
                return
            self._write_child(data[:i])
            self.child.send_signal(signal.SIGINT)  # the byte is consumed by the interrupt
            data = data[i + 1 :]

    def _write_child(self, data: bytes) -> None:
        if not data or self.child is None or self.child.stdin is None:
            return
        try:
            self.child.stdin.write(data)
            self.child.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the child is going down; its exit is handled below

    # --- the MicroPython child --------------------------------------------------------

    def boot(self, cause: int | None, banner: bool) -> None:
        """Power on (cause 1), hard reset (2) or soft reset (None: keep the cause)."""
        if cause is not None:
            self.cause = cause
            self.raw = False
        if banner:
            prof = self.cfg["board"]
            self.emit(
                _ROM_BANNER.format(
                    rst=_RST.get(self.cause, _RST[2]),
                    name=self.cfg["name"],
                    kind=prof["kind"],
                    flash=self.cfg["blocks"] * self.cfg["block_size"] // 1024,
                    heap=prof["heap_bytes"] // 1024,
                ).encode()
            )
        ctl_r, ctl_w = os.pipe()
        bootcfg = {
            "image": self.cfg["image"],
            "block_size": self.cfg["block_size"],
            "blocks": self.cfg["blocks"],
            "cut_file": str(self.d / state.CUT_FILE),
            "ctl_fd": ctl_w,
            "raw": self.raw,
            "cause": self.cause,
            "efuse": self.cfg["efuse"],
            "uid": self.cfg["uid"],
            "board": self.cfg["board"],
            "net": self.cfg["net"],
            "stats_base": [self.stats["writes"], self.stats["erases"], self.stats["reads"]],
            # chip boots so far, this one included (soft resets restart the interpreter only)
            "boots": self.stats["boots"] - self.stats["soft_resets"] + 1,
        }
        (self.d / state.BOOT_FILE).write_text(json.dumps(bootcfg))
        env = {k: v for k, v in os.environ.items() if k != "MICROPYPATH"}
        self.child = subprocess.Popen(
            [
                self.cfg["micropython"],
                "-X",
                f"heapsize={self.cfg['heapsize']}",
                str(state.firmware_dir() / "simboot.py"),
                str(self.d / state.BOOT_FILE),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(ctl_w,),
            env=env,
            cwd=str(self.d),
            preexec_fn=_pdeathsig,
        )
        os.close(ctl_w)
        self.ctl_r = ctl_r
        self.ctl_buf = b""
        self.up = self.busy = False
        self.kbd = True
        self.pending = None
        assert self.child.stdout is not None
        os.set_blocking(self.child.stdout.fileno(), False)
        self.sel.register(self.child.stdout, selectors.EVENT_READ, "out")
        self.sel.register(ctl_r, selectors.EVENT_READ, "ctl")
        self.stats["boots"] += 1
        self.boot_times.append(time.monotonic())
        self.dirty = True

    def on_ctl(self) -> None:
        try:
            data = os.read(self.ctl_r, 65536)
        except BlockingIOError:
            return
        if not data:
            self.sel.unregister(self.ctl_r)
            os.close(self.ctl_r)
            self.ctl_r = -1
            return
        self.ctl_buf += data
        *lines, self.ctl_buf = self.ctl_buf.split(b"\n")
        st = self.stats
        for ln in lines:
            p = ln.split()
            if not p:
                continue
            k = p[0]
            if k == b"W":
                st["writes"] += 1
                b = p[1].decode()
                st["block_writes"][b] = st["block_writes"].get(b, 0) + 1
            elif k == b"E":
                st["erases"] += 1
                b = p[1].decode()
                st["block_erases"][b] = st["block_erases"].get(b, 0) + 1
            elif k == b"B":
                self.busy, self.kbd = True, True
            elif k == b"I":
                self.busy = False
                reads = int(p[1])
                st["reads"] += reads - self.boot_reads
                self.boot_reads = reads
            elif k == b"K0":
                self.kbd = False
            elif k == b"K1":
                self.kbd = True
            elif k == b"U":
                self.up = True
                self.boot_reads = 0
                plan = self.cfg.get("cut_on_start")
                if plan and not self.ready_sent:
                    # armed by `start`: count from the moment the board answers
                    state.write_cut(self.d, (st["writes"] + plan[0], plan[1]))
                if not self.ready_sent:
                    self.send_ready(f"ok {self.port}")
            elif k == b"X":
                self.pending = "cut"
                st["writes"] += 1  # the torn (or last) write happened, at least in part
                st["power_cuts"] += 1
                st["last_cut"] = {
                    "block": int(p[1]),
                    "offset": int(p[2]),
                    "bytes_written": int(p[3]),
                    "boot": st["boots"],
                }
                state.write_cut(self.d, None)  # disarmed: one cut per arming
            elif k == b"R":
                self.pending = "reset"
            elif k == b"F":
                st["formats"] += 1
        self.dirty = True

    def on_child_out(self) -> None:
        assert self.child is not None and self.child.stdout is not None
        try:
            data = os.read(self.child.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        if data:
            self.emit(data)
            return
        # EOF: the interpreter ended (reset, power cut or crash)
        self.sel.unregister(self.child.stdout)
        while self.ctl_r >= 0:
            self.on_ctl()
        rc = self.child.wait()
        for f in (self.child.stdin, self.child.stdout):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        self.child = None
        if self.stop:
            return
        st = self.stats
        if self.pending == "cut":
            time.sleep(0.02)  # the power is off for a moment
            self.boot(1, True)
        elif self.pending == "reset":
            st["hard_resets"] += 1
            self.boot(2, True)
        elif rc in (64, 65):
            st["soft_resets"] += 1
            self.raw = rc == 65
            self.boot(None, False)
        else:
            # the firmware crashed (a bug of the sim, or the heap could not even boot)
            st["crashes"] += 1
            self.emit(f"\r\nmpguard sim: firmware stopped (exit {rc}); rebooting\r\n".encode())
            if not self.ready_sent:
                self.send_ready(f"error the firmware did not boot (exit {rc}); see {self.d / state.LOG_FILE}")
                self.stop = True
                return
            if len(self.boot_times) == self.boot_times.maxlen and time.monotonic() - self.boot_times[0] < 2:
                time.sleep(1)  # a boot loop: slow down as a watchdog-reset board would not, but keep the host usable
            self.boot(2, True)

    def send_ready(self, msg: str) -> None:
        if self.ready_sent:
            return
        self.ready_sent = True
        try:
            os.write(self.ready_fd, (msg + "\n").encode())
            os.close(self.ready_fd)
        except OSError:
            pass

    # --- main loop --------------------------------------------------------------------

    def write_stats(self) -> None:
        self.stats_gen += 1
        self.stats["gen"] = self.stats_gen
        state.write_stats(self.d, self.stats)
        self.dirty = False
        self.want_stats = False

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)

        def on_term(signum: int, frame: Any) -> None:
            self.stop = True

        def on_usr1(signum: int, frame: Any) -> None:
            self.want_stats = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, on_usr1)
        self.sel.register(wake_r, selectors.EVENT_READ, "wake")
        self.open_pty()
        state.write_json(
            self.d / state.STATE_FILE,
            {"pid": os.getpid(), "port": self.port, "started": time.time()},
        )
        self.boot(1, True)
        last_stats = time.monotonic()
        while not self.stop:
            timeout = 0.5
            if self.out:
                timeout = min(timeout, self.tx.wait() or 0.005)
            if self.inq:
                timeout = min(timeout, self.rx.wait() or 0.005)
            for key, _ in self.sel.select(timeout):
                tag = key.data
                if tag == "pty":
                    try:
                        data = os.read(self.master, 65536)
                    except (BlockingIOError, OSError):
                        data = b""
                    self.inq += data
                elif tag == "out":
                    if self.child is not None:
                        self.on_child_out()
                elif tag == "ctl":
                    if self.ctl_r >= 0:
                        self.on_ctl()
                elif tag == "wake":
                    try:
                        os.read(wake_r, 512)
                    except BlockingIOError:
                        pass
            self.feed_child()
            self.flush_out()
            now = time.monotonic()
            if self.want_stats or (self.dirty and now - last_stats > 0.5):
                if not self._own_lock():
                    break  # our folder was deleted or replaced: nobody can reach us any more
                self.write_stats()
                last_stats = now
            elif now - last_stats > 2:
                if not self._own_lock():
                    break
                last_stats = now
        self.shutdown()

    def _own_lock(self) -> bool:
        try:
            return os.stat(self.d / state.LOCK_FILE).st_ino == self.lock_ino
        except FileNotFoundError:
            return False

    def shutdown(self) -> None:
        if not self._own_lock():
            if self.child is not None:
                self.child.kill()
                self.child.wait()
            return
        if self.child is not None:
            self.child.kill()
            self.child.wait()
        self.write_stats()
        try:
            (self.d / state.TTY_LINK).unlink()
        except FileNotFoundError:
            pass
        try:
            (self.d / state.STATE_FILE).unlink()
        except FileNotFoundError:
            pass
        if not self.ready_sent:
            self.send_ready("error the sim stopped before the board booted")


def main(argv: list[str]) -> int:
    d = Path(argv[0])
    ready_fd = int(argv[1])
    # Detach: the launcher reaps our parent at once; we live on, reparented, in our own session.
    if os.fork() > 0:
        os._exit(0)
    lock = os.open(d / state.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.write(ready_fd, b"error already running\n")
        return 1
    sup = Supervisor(d, ready_fd)
    sup.lock_ino = os.fstat(lock).st_ino
    try:
        sup.run()
    except Exception as e:  # logged for the user; the launcher gets the reason
        import traceback

        traceback.print_exc()
        sup.send_ready(f"error {e}")
        if sup.child is not None:
            sup.child.kill()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
