"""The supervisor of one virtual board: `python -m mpguard.sim.supervisor SIM_DIR READY_FD`.

One detached process per sim, holding the sim's `lock` (flock) while it lives (that is how
`list` and `stop` know it runs). It
- owns the board's serial port (terminal.py: a pty, optionally at a UART's byte rate and
  behind a USB bridge's latency);
- keeps machine.WDT's deadline and resets the board when it passes (reset cause 3);
- runs the firmware on the MicroPython unix port, one process per boot (child.py; forked by
  the sim's fork server, launch.py --serve), so every boot has a fresh heap, and boots it
  again after a soft reset, hard reset or power cut, printing what a board prints; the
  firmware is compiled to .mpy once, into a cache shared by every sim (fwcache.py);
- keeps what the firmware's events tell (events.py): the wear counters in `stats.json`,
  and whether a Ctrl-C byte interrupts (only while user code runs and kbd_intr is on does it
  become SIGINT; otherwise it passes through as data, as a board's UART ISR does).
SIGTERM stops it (the fork server and the boot die with it); SIGUSR1 asks for an up-to-date
stats.json and for the requests in `requests/` (control.py: a reflash powers the board off,
writes an image over its flash and powers it on, answered once the board answers again).
(Over 300 lines: one process's main loop and the board's life cycle read best in one place.)
"""

from __future__ import annotations

import contextlib
import faulthandler
import fcntl
import json
import os
import selectors
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from ..errors import SimError
from ..forkserver import Zygote
from . import folder, fwcache
from .child import Child
from .events import Board, ev
from .hardware import DEFAULT_FS, check_head, efuse_words
from .terminal import Terminal

_ROM_BANNER = (
    "ets Jul 29 2019 12:21:46\r\n\r\nrst:{rst},boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
    "mpguard virtual board {name}: {kind}, flash {flash} KiB, heap {heap} KiB\r\n"
)
_RST = {1: "0x1 (POWERON_RESET)", 2: "0xc (SW_CPU_RESET)", 3: "0xc (SW_CPU_RESET)"}
# What an ESP32 prints when machine.WDT's task watchdog bites (then it restarts).
_WDT_BITE = (
    "E ({ms}) task_wdt: Task watchdog got triggered. The following tasks/users did not reset "
    "the watchdog in time:\r\nE ({ms}) task_wdt:  - mpy_machine_wdt\r\nRebooting...\r\n"
)
_EXIT_SOFT = (64, 65)  # firmware/_simfw.py: soft reset from the friendly / raw REPL


class Supervisor:
    def __init__(self, d: Path, ready_fd: int):
        self.d = d
        self.ready_fd = ready_fd
        self.cfg = json.loads((d / folder.CONFIG).read_text())
        stats = folder.read_stats(d)
        stats.pop("gen", None)  # stats.json of an older mpguard
        self.board = Board(stats)
        self.term = Terminal(self.cfg.get("baud"), self.cfg.get("latency_ms") or 0.0)
        self.rx_buffer = int(self.cfg.get("rx_buffer", folder.RX_BUFFER) or 0)
        self.sel = selectors.DefaultSelector()
        self.child: Child | None = None
        self.zygote: Zygote | None = None  # forks the boots (started in run())
        self.fwdir: Path | None = None  # the firmware the boots run (fwcache.boot_dir, in run())
        self.printed = b""  # the tail of what this boot printed (for a boot that fails)
        self.raw = False  # the REPL's mode, kept across a soft reset
        self.cause = 1  # reset cause of this boot: 1 power on, 2 hard reset, 3 watchdog
        self.wdt_deadline: float | None = None  # machine.WDT: reset unless fed before this
        self.stop = False
        self.want_stats = False
        self.want_requests = False
        self.reflashed: list[str] = []  # reflash requests answered once the board is up again
        self.dirty = False
        self.ready_sent = False
        self.boot_times: deque[float] = deque(maxlen=5)
        self.lock_ino = -1

    # --- boots ------------------------------------------------------------------------

    def boot(self, cause: int | None, banner: bool) -> None:
        """Power on (cause 1), hard reset (2) or soft reset (None: keep the cause)."""
        if cause is not None:
            self.cause = cause
            self.raw = False
            self.wdt_deadline = None  # a reset stops the watchdog; a soft reset does not
        if banner:
            prof = self.cfg["board"]
            self.term.emit(_ROM_BANNER.format(
                rst=_RST.get(self.cause, _RST[2]),
                name=self.cfg["name"],
                kind=prof["kind"],
                flash=self.cfg["blocks"] * self.cfg["block_size"] // 1024,
                heap=prof["heap_bytes"] // 1024,
            ).encode())
        st = self.board.stats
        bootcfg = {
            "image": self.cfg["image"],
            "block_size": self.cfg["block_size"],
            "blocks": self.cfg["blocks"],
            "fs": self.cfg.get("fs", DEFAULT_FS),  # what a blank flash is formatted as
            "cut_file": str(self.d / folder.CUT_FILE),
            "raw": self.raw,
            "cause": self.cause,
            "efuse": self.efuse_words(),
            "uid": self.cfg["uid"],
            # the profile as the board needs it (the anchors pin's place is the agent's own
            # table, guard/pin.py; its words are in "efuse"): every byte here is app heap
            "board": {k: v for k, v in self.cfg["board"].items() if k != "anchors_pin"},
            "net": self.cfg["net"],
            "dir": str(self.d),
            "reserve": self.cfg.get("peripheral_kib", 0),
            "boot": st["boots"] + 1,
            "stats_base": [st["writes"], st["erases"], st["reads"]],
            "cut": self.board.cut,
            # armed by `start`: counted from the moment the board first answers
            "cut_now": None if self.ready_sent else self.cfg.get("cut_on_start"),
            # chip boots so far, this one included (soft resets restart the interpreter only)
            "boots": st["boots"] - st["soft_resets"] + 1,
        }
        fw = self.fwdir
        if fw is not None and not (fw / fwcache.ENTRY).is_file():  # the cache was cleared
            fw = self.fwdir = fwcache.boot_dir(self.cfg["micropython"])
        self.child = Child(self.d, self.cfg["micropython"], self.cfg["heapsize"], bootcfg, self.zygote, fw)
        self.printed = b""
        self.sel.register(self.child.stdout, selectors.EVENT_READ, "out")
        self.sel.register(self.child.ctl, selectors.EVENT_READ, "ctl")
        self.board.booting()
        self.boot_times.append(time.monotonic())
        self.dirty = True

    def efuse_words(self) -> dict[str, int]:
        """The eFuse words, read again from the eFuse file at every boot: what espefuse burned
        meanwhile (`mpguard fuse harden`) shows after the next reset, as on a chip, where
        espefuse resets the board after a burn. A file that cannot be read keeps the last."""
        f = self.cfg.get("efuse_file")
        if f:
            try:
                self.cfg["efuse"] = efuse_words(f, self.cfg["board"])
            except SimError as e:
                print(f"mpguard sim: eFuse file: {e}", file=sys.stderr, flush=True)
        return dict(self.cfg["efuse"])

    def apply(self, lines: list[bytes]) -> None:
        for ln in lines:
            try:
                letter = self.board.apply(ln)
            except ValueError as e:
                print(f"mpguard sim: bad event from the firmware: {e}", file=sys.stderr, flush=True)
                continue
            if letter == ev.UP:
                if not self.ready_sent:
                    self.send_ready(f"ok {self.term.port}")
                self.answer_reflashed(None)
            elif letter == ev.WDT:
                self.wdt_deadline = time.monotonic() + self.board.wdt_ms / 1000
            self.dirty = True

    def on_child_out(self, child: Child) -> None:
        data = child.read_out()
        if data:
            self.term.emit(data)
            self.printed = (self.printed + data)[-512:]
            return
        if data is None:  # EOF: the interpreter ended (reset, power cut or crash)
            self.sel.unregister(child.stdout)
            self._forget(child.ctl)
            rc = child.reap()
            self.apply(child.last_events())
            child.close()
            self.child = None
            if not self.stop:
                self.after(rc)

    def after(self, rc: int) -> None:
        """Boot again as a board would after the interpreter ended with `rc`."""
        st = self.board.stats
        if self.board.pending == "cut":
            time.sleep(0.02)  # the power is off for a moment
            self.boot(1, True)
        elif self.board.pending == "reset":
            st["hard_resets"] += 1
            self.boot(2, True)
        elif self.board.pending == "wdt":
            st["wdt_resets"] += 1
            self.boot(3, True)
        elif rc in _EXIT_SOFT:
            st["soft_resets"] += 1
            self.raw = rc == _EXIT_SOFT[1]
            self.boot(None, False)
        else:
            # the firmware crashed (a bug of the sim, or the heap could not even boot it)
            st["crashes"] += 1
            self.term.emit(f"\r\nmpguard sim: firmware stopped (exit {rc}); rebooting\r\n".encode())
            last = self.printed.decode("utf-8", "replace").strip().splitlines()
            why = f": {last[-1]}" if last else ""
            self.answer_reflashed(f"the firmware did not boot from the new image (exit {rc}){why}")
            if not self.ready_sent:
                self.send_ready(f"error the firmware did not boot (exit {rc}){why}")
                self.stop = True
                return
            if len(self.boot_times) == self.boot_times.maxlen and time.monotonic() - self.boot_times[0] < 2:
                time.sleep(1)  # a boot loop: slow down to keep the host usable
            self.boot(2, True)

    def watchdog(self) -> float:
        """Reset the board if its watchdog was not fed in time; seconds until it may bite."""
        if self.wdt_deadline is None or self.child is None:
            return 0.5
        left = self.wdt_deadline - time.monotonic()
        if left > 0 or self.board.pending:
            return max(left, 0.001)
        self.board.pending = "wdt"
        self.wdt_deadline = None
        ms = int((time.monotonic() - self.boot_times[-1]) * 1000)
        self.term.emit(_WDT_BITE.format(ms=ms).encode())
        self.child.proc.kill()  # its end (EOF on stdout) boots the board again: after()
        return 0.5

    def feed(self) -> None:
        """Typed bytes to the board; a Ctrl-C byte interrupts running user code.

        With an RX buffer size (`rx_buffer`, e.g. the ESP32 port's 260-byte stdin ring buffer)
        a byte that comes while that many wait unread is lost, as the board's UART handler
        drops what its full ring cannot take: the bytes the board has not read yet are the
        ones in its stdin pipe (FIONREAD)."""
        if self.child is None:
            return
        data = self.term.take()
        b = self.board
        if b"\x03" in data:
            # what a Ctrl-C does depends on whether user code runs: take the events the board
            # sent since this round's select (its "busy" may be in the pipe, not yet read)
            self.apply(self.child.events())
        while data:
            i = data.find(b"\x03")
            if i < 0 or not (b.up and b.busy and b.kbd):
                self._to_board(data)
                return
            self._to_board(data[:i])
            self.child.interrupt()  # the byte is consumed by the interrupt
            data = data[i + 1 :]

    def _to_board(self, data: bytes) -> None:
        if self.rx_buffer and data and self.child is not None:
            room = max(0, self.rx_buffer - self.child.unread())
            if room < len(data):
                self.board.stats["rx_dropped"] += len(data) - room
                self.dirty = True
                data = data[:room]
        if self.child is not None:
            self.child.write(data)

    def _forget(self, fd: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(fd)

    def send_ready(self, msg: str) -> None:
        if self.ready_sent:
            return
        self.ready_sent = True
        try:
            os.write(self.ready_fd, (msg + "\n").encode())
            os.close(self.ready_fd)
        except OSError:
            pass

    # --- requests (control.py) ---------------------------------------------------------

    def take_requests(self) -> None:
        """Every request file in requests/, oldest first; each is answered in ID.ans."""
        q = self.d / folder.REQUESTS
        try:
            reqs = sorted(q.glob("*.req"), key=lambda f: f.stat().st_mtime_ns)
        except (FileNotFoundError, NotADirectoryError):
            return
        for f in reqs:
            req = folder.read_json(f)
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
            rid = f.name[: -len(".req")]
            if isinstance(req, dict) and isinstance(req.get("reflash"), str):
                self.reflash(rid, Path(req["reflash"]))
            else:
                self.answer(rid, f"unknown request {req!r}")

    def answer(self, rid: str, error: str | None) -> None:
        folder.write_json(self.d / folder.REQUESTS / f"{rid}.ans",
                          {"error": error, "stats": self.board.stats})

    def answer_reflashed(self, error: str | None) -> None:
        for rid in self.reflashed:
            self.answer(rid, error)
        self.reflashed = []

    def reflash(self, rid: str, src: Path) -> None:
        """Power off, `src`'s bytes over the flash image (in place: its path stays), power on;
        answered when the board answers. A file that is not the board's flash changes
        nothing (control.reflash checks it first; it may have changed since)."""
        bs, blocks = self.cfg["block_size"], self.cfg["blocks"]
        try:
            data = src.read_bytes()
            if len(data) != bs * blocks:
                raise SimError(f"{src} is {len(data)} bytes; the flash is {bs * blocks} bytes")
            check_head(src, len(data), data, bs, self.cfg.get("fs", DEFAULT_FS))
        except (OSError, SimError) as e:
            self.answer(rid, str(e))
            return
        self.power_off()
        try:
            with open(self.cfg["image"], "r+b") as f:
                f.write(data)
        except OSError as e:  # the board powers on from what reached its image
            self.answer(rid, f"cannot write the flash image {self.cfg['image']}: {e}")
        else:
            self.reflashed.append(rid)
            self.board.stats["reflashes"] = self.board.stats.get("reflashes", 0) + 1
        folder.write_cut(self.d, None)  # as `start`: no cut armed for the new image
        self.board.cut = None
        time.sleep(0.02)  # the power is off for a moment, as after a power cut
        self.boot(1, True)

    def power_off(self) -> None:
        """End the running boot at once, as a power cut does (what it printed and did not
        reach the port is lost; the events it sent are counted)."""
        child, self.child = self.child, None
        if child is None:
            return
        self._forget(child.stdout)
        self._forget(child.ctl)
        child.kill()
        events = child.last_events(timeout=1.0)
        child.reap()
        child.close()
        self.apply(events)

    # --- main loop --------------------------------------------------------------------

    def write_stats(self) -> None:
        # Cleared first: a SIGUSR1 that comes while we write asks for another write (cleared
        # after, it was lost, and its caller waited in vain).
        self.want_stats = False
        if self.child is not None:
            self.apply(self.child.events())  # every event sent so far is counted
        self.dirty = False
        folder.write_stats(self.d, self.board.stats)

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)

        def on_term(signum: int, frame: Any) -> None:
            self.stop = True

        def on_usr1(signum: int, frame: Any) -> None:
            self.want_stats = True
            self.want_requests = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, on_usr1)
        self.sel.register(wake_r, selectors.EVENT_READ, "wake")
        port = self.term.open(self.d / folder.TTY_LINK)
        self.sel.register(self.term.master, selectors.EVENT_READ, "pty")
        self.write_stats()  # stamped now: a stats.json of before is never taken for an answer
        folder.write_json(self.d / folder.STATE_FILE, {"pid": os.getpid(), "port": port, "started": time.time()})
        self.fwdir = fwcache.boot_dir(self.cfg["micropython"])  # compiled once, kept in a cache
        self.zygote = Zygote.start(self.d, self.cfg["micropython"])
        self.boot(1, True)
        last_stats = time.monotonic()
        while not self.stop:
            for key, _ in self.sel.select(self.term.timeout(self.watchdog())):
                tag = key.data
                if tag == "pty":
                    self.term.read()
                elif tag == "out":
                    if self.child is not None:
                        self.on_child_out(self.child)
                elif tag == "ctl":
                    if self.child is not None:
                        self.apply(self.child.events())
                        if self.child.eof:
                            self._forget(self.child.ctl)
                elif tag == "wake":
                    try:
                        os.read(wake_r, 512)
                    except BlockingIOError:
                        pass
            if self.want_requests:
                self.want_requests = False  # one that comes meanwhile is taken next time
                self.take_requests()
            self.feed()
            self.term.flush()
            now = time.monotonic()
            if self.want_stats or (self.dirty and now - last_stats > 0.5) or now - last_stats > 2:
                if not self._own_lock():
                    break  # our folder was deleted or replaced: nobody can reach us any more
                if self.want_stats or self.dirty:
                    self.write_stats()
                last_stats = now
        self.shutdown()

    def _own_lock(self) -> bool:
        try:
            return os.stat(self.d / folder.LOCK_FILE).st_ino == self.lock_ino
        except FileNotFoundError:
            return False

    def shutdown(self) -> None:
        self.power_off()
        if self.zygote is not None:
            self.zygote.close()
        if not self._own_lock():
            return
        self.write_stats()
        self.term.unlink(self.d / folder.TTY_LINK)
        with contextlib.suppress(FileNotFoundError):
            (self.d / folder.STATE_FILE).unlink()
        if not self.ready_sent:
            self.send_ready("error the sim stopped before the board booted")
        self.answer_reflashed("the sim stopped before the board answered")


def main(argv: list[str]) -> int:
    d = Path(argv[0])
    ready_fd = int(argv[1])
    # Detach: the launcher reaps our parent at once; we live on, reparented, in our own session.
    if os.fork() > 0:
        os._exit(0)
    lock = os.open(d / folder.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.write(ready_fd, b"error already running\n")
        return 1
    with contextlib.suppress(FileNotFoundError):  # left by a killed supervisor: a stale pid
        (d / folder.STATE_FILE).unlink()
    # `kill -USR2 PID` writes where every thread of this supervisor is to its log (stderr):
    # what a stuck sim was doing (the suite's failure report sends it, tests/e2e/conftest.py).
    faulthandler.register(signal.SIGUSR2, all_threads=True)
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
