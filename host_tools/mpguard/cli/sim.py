"""`mpguard sim start|list|stop|rm|prune|stats|cut|reflash|io`: thin wrappers over mpguard.sim."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import CommandError
from ..reasons import EXIT_ERROR, EXIT_OK, EXIT_USAGE, epilog

# Every sim subcommand: 0 done; 2 bad input, or the sim is not in the state it needs to be
# (SimError); 1 anything unexpected.
_EPILOG = epilog(EXIT_OK, EXIT_USAGE, EXIT_ERROR)


def _start(args: argparse.Namespace) -> int:
    from .. import sim

    was = args.name is not None and any(s.name == args.name and s.running for s in sim.list_sims())
    info = sim.start(
        args.name,
        image=args.image,
        efuse=args.efuse,
        board=args.board,
        baud=args.baud,
        latency=args.latency,
        rx_buffer=args.rx_buffer,
        power_cut_after=args.power_cut_after,
        power_cut_seed=args.power_cut_seed,
        torn=args.torn,
        fs=args.fs,
    )
    state = "already running" if was else "running"
    fs = "" if info.fs == "littlefs" else f", fs {info.fs}"
    print(f"sim {info.name} {state} (pid {info.pid}, board {info.board}{fs}, image {info.image})")
    print(info.port)  # the last line of stdout is the port, for scripts
    return 0


def _list(args: argparse.Namespace) -> int:
    from .. import sim

    sims = sim.list_sims()
    if args.json:
        # one object, as every command's --json (README): the sims under "sims"
        print(json.dumps({"ok": True, "exit_code": EXIT_OK, "sims": [s.as_dict() for s in sims]},
                         indent=2))
        return 0
    if not sims:
        print("no sims")
        return 0
    rows = [("NAME", "STATE", "PORT", "BOARD", "BAUD", "LATENCY", "RX BUFFER", "IMAGE")]
    for s in sims:
        rows.append((s.name, "running" if s.running else "stopped", s.port or "-", s.board,
                     str(s.baud or "-"), f"{s.latency_ms:g} ms" if s.latency_ms else "-",
                     f"{s.rx_buffer} B" if s.rx_buffer else "-", s.image))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _stop(args: argparse.Namespace) -> int:
    from .. import sim

    if args.all and args.name:  # which was meant: one sim, or every one?
        raise CommandError("give a sim's name or --all, not both")
    if args.all:
        for s in sim.stop_all():
            print(f"stopped {s.name}")
        return 0
    if not args.name:
        raise CommandError("name a sim to stop, or use --all")
    sim.stop(args.name)
    print(f"stopped {args.name}")
    return 0


def _rm(args: argparse.Namespace) -> int:
    from .. import sim

    info = sim.rm(args.name, force=args.force)
    print(f"removed {info.name} ({info.state_dir})")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from .. import sim

    gone = sim.prune(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for s in gone:
        print(f"{verb} {s.name} ({s.state_dir})")
    if not gone:
        print("no stopped sims")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from .. import sim

    st: dict[str, Any] = sim.stats(args.name)
    if args.json:
        print(json.dumps({"ok": True, "exit_code": EXIT_OK, **st}, indent=2))
        return 0
    for k in ("writes", "erases", "reads", "boots", "soft_resets", "hard_resets", "power_cuts",
              "reflashes", "formats", "crashes", "rx_dropped"):
        print(f"{k:12} {st.get(k, 0)}")
    bw = st.get("block_writes") or {}
    if bw:
        hot = max(bw.items(), key=lambda kv: kv[1])
        print(f"{'hottest':12} block {hot[0]}: {hot[1]} writes")
    return 0


def _cut(args: argparse.Namespace) -> int:
    from .. import sim

    if args.off:
        sim.disarm_power_cut(args.name)
        print(f"power cut of {args.name} disarmed")
        return 0
    n, pm = sim.arm_power_cut(args.name, after=args.after, seed=args.seed, torn=args.torn)
    part = f", {pm / 10:g}% of that write lands" if pm < 1000 else ""
    print(f"power of {args.name} will be cut at block write {n} from now{part}")
    return 0


def _reflash(args: argparse.Namespace) -> int:
    from .. import sim

    st = sim.reflash(args.name, args.image)
    print(f"sim {args.name} powered off, flashed with {args.image} and powered on "
          f"(boot {st['boots']})")
    return 0


def _parse_set(spec: str) -> tuple[str, Any, Any]:
    """KIND:ID=VALUE of `sim io --set` -> (kind, id, value); VALUE "-" removes the input."""
    import datetime

    if "=" not in spec:
        raise CommandError(f"--set {spec!r}: want KIND:ID=VALUE, e.g. adc:34=1234 or pin:0=1")
    key, val = spec.split("=", 1)
    kind, _, ident = key.partition(":")
    try:
        if kind == "rtc":
            if val == "-":
                return kind, 0, None
            t = datetime.datetime.fromisoformat(val)
            return kind, 0, (t.year, t.month, t.day, t.weekday(), t.hour, t.minute, t.second, 0)
        if kind == "i2c":
            bus, _, addr = ident.rpartition(":")
            return kind, (int(addr, 0), int(bus or "0")), None if val == "-" else bytes.fromhex(val)
        if kind == "spi":
            return kind, int(ident or "1"), None if val == "-" else bytes.fromhex(val)
        return kind, int(ident, 0), None if val == "-" else int(val, 0)
    except ValueError as e:
        raise CommandError(f"--set {spec!r}: {e}") from None


def _io(args: argparse.Namespace) -> int:
    from .. import sim

    for spec in args.set or []:
        kind, ident, val = _parse_set(spec)
        if kind == "i2c":
            sim.set_i2c(args.name, ident[0], val, bus=ident[1])
        else:
            sim.set_input(args.name, kind, ident, val)
    if args.clear:
        sim.clear_io(args.name)
    if args.set or args.clear:
        return 0
    log = sim.io(args.name)
    if args.json:
        print(json.dumps({"ok": True, "exit_code": EXIT_OK, **log.as_dict()}, indent=2))
        return 0
    if log.truncated:
        print("(older records were dropped: the log passed 1 MiB)")
    for pin, levels in sorted(log.pins.items(), key=lambda kv: int(kv[0])):
        print(f"pin {pin:>2}  {len(levels)} writes, {log.toggles(pin)} changes, last {levels[-1]}")
    for r in log.records:
        if r.kind != "pin":
            print(f"{r.kind} {r.id}  {' '.join(r.value)}  (boot {r.boot}, {r.ms} ms)")
    if not log.records:
        print("no peripheral activity recorded")
    return 0


def add_parser(sub: Any, summary: str) -> None:
    from ..sim import folder, hardware, lifecycle  # defaults shown in the help

    p = sub.add_parser("sim", help=summary,
                       description="Virtual ESP32 boards (see docs/sim.md).", epilog=_EPILOG)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    ss = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")

    def cmd(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        return ss.add_parser(name, help=help, description=description or help, epilog=_EPILOG)

    s = cmd("start", "start a sim in the background; prints its port last",
            "Start a sim in the background and print its port on the last line. A sim that "
            "runs already is left as it is and its port printed again.")
    s.add_argument("--name", help="sim name (default: the first free simN)")
    s.add_argument("--image", help="flash image file (littlefs2, or FAT with --fs fat; created "
                   "blank if missing)")
    s.add_argument("--efuse", help="eFuse file of `espefuse --virt --path-efuse-file F`")
    s.add_argument("--board", help="board kind (boards/KIND.json; default: the sim's board "
                   f"before, else {lifecycle.DEFAULT_BOARD})")
    s.add_argument("--baud", type=int, help="limit the port to a UART's byte rate (baud/10 B/s)")
    s.add_argument("--latency", type=float, metavar="MS",
                   help="delay every byte each way by MS milliseconds, as a USB-serial bridge "
                   "does (1-16 ms on real boards; default 0)")
    s.add_argument("--rx-buffer", type=int, metavar="BYTES",
                   help="bytes that may wait unread on the board before more are lost "
                   f"({folder.ESP32_RX_BUFFER}: the ESP32 port's stdin ring buffer; default 0: "
                   "no limit, nothing lost)")
    s.add_argument("--fs", choices=hardware.FS_KINDS,
                   help="the flash's filesystem: a blank flash is formatted with it; fat is a "
                   "board whose filesystem an older firmware made (default: the sim's before, "
                   f"else {hardware.DEFAULT_FS})")
    s.add_argument("--power-cut-after", type=int, metavar="N",
                   help="cut the power at the N-th flash block write")
    s.add_argument("--power-cut-seed", type=int, metavar="S",
                   help="cut the power at a random block write (1..64) drawn with seed S")
    s.add_argument("--torn", action="store_true",
                   help="the cut write is torn: only part of it reaches flash")
    s.set_defaults(func=_start)

    s = cmd("list", "list sims (running and stopped)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_list)

    s = cmd("stop", "stop a sim (its flash is kept)")
    s.add_argument("name", nargs="?")
    s.add_argument("--all", action="store_true", help="stop every running sim")
    s.set_defaults(func=_stop)

    s = cmd("rm", "remove a stopped sim and its folder (flash, counters, log)",
            "Remove a stopped sim: its folder goes, with the flash image in it. An image or "
            "eFuse file given with --image/--efuse from elsewhere is never touched.")
    s.add_argument("name")
    s.add_argument("--force", action="store_true", help="stop the sim first if it runs")
    s.set_defaults(func=_rm)

    s = cmd("prune", "remove every stopped sim")
    s.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    s.set_defaults(func=_prune)

    s = cmd("stats", "flash wear and reset counters of a sim")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_stats)

    s = cmd("cut", "arm a power cut on a running sim")
    s.add_argument("name")
    s.add_argument("--after", type=int, metavar="N", help="at the N-th block write from now")
    s.add_argument("--seed", type=int, metavar="S", help="at a random write drawn with seed S")
    s.add_argument("--torn", action="store_true", help="only part of that write lands")
    s.add_argument("--off", action="store_true", help="disarm")
    s.set_defaults(func=_cut)

    s = cmd("reflash", "write an image over a running sim's flash, as a power cycle",
            "Power a running sim off, write IMAGE's bytes over its flash (the board's flash "
            "size, a littlefs2 (FAT for a sim of --fs fat) or blank image) and power it on: the "
            "port stays the same, an armed power cut is disarmed, the counters go on. Returns "
            "once the board answers.")
    s.add_argument("name")
    s.add_argument("image", help="the flash image to write (left as it is)")
    s.set_defaults(func=_reflash)

    s = cmd("io", "what the app did to its pins and buses; set what it reads",
            "Without options: what the app did to its peripherals (pin writes, PWM, I2C and "
            "SPI writes, RTC, Wi-Fi). --set KIND:ID=VALUE sets an input the app reads: "
            "pin:0=1, adc:34=1234 (raw 12-bit), i2c:0x76=HEX or i2c:BUS:0x76=HEX (a device and "
            "its register memory), spi:1=HEX (bytes SPI reads return), rtc=2025-01-02T12:00:00; "
            "VALUE - removes it. See docs/sim.md, Peripherals.")
    s.add_argument("name")
    s.add_argument("--set", action="append", metavar="KIND:ID=VALUE", help="set an input (repeatable)")
    s.add_argument("--clear", action="store_true", help="forget the recorded activity")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_io)
