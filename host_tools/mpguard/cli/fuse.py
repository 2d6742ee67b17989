"""`mpguard fuse status|harden`: a chip's eFuses in the words of attestation; guarded burns."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import project, reasons
from ..errors import ProjectError
from .common import Result

if TYPE_CHECKING:
    from .. import fuse


_EXIT = (reasons.EXIT_OK, reasons.EXIT_USAGE, reasons.EXIT_LINK, reasons.EXIT_REFUSED,
         reasons.EXIT_ERROR)


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    from .. import fuse

    p = sub.add_parser("fuse", help=summary,
                       description="Read a chip's eFuses with espefuse, or burn a hardening "
                       "profile: always a dry run first, burns only with --burn and "
                       f"{fuse.CONFIRM_FLAG}. See docs/fuse.md.",
                       epilog=reasons.epilog(*_EXIT))
    s = p.add_subparsers(dest="fuse_cmd", metavar="SUBCOMMAND")
    st = s.add_parser("status", help="espefuse's summary mapped to the posture facts",
                      description="espefuse reads the chip; the eFuse fields the board profile "
                      "maps are decoded by the attestation's own rules (jtag, uart_download, "
                      "flash_encryption, secure_boot, ...) and the anchors pin is compared with "
                      "the anchors file the board holds (read first over its REPL, which "
                      "interrupts its app as mpremote does), else with the project's.",
                      epilog=reasons.epilog(*_EXIT[:3]))
    _target_args(st)
    st.set_defaults(func=run_status)
    h = s.add_parser("harden", help="burn a hardening profile (dry run unless --burn)",
                     description="Plan the burns of a hardening profile on this chip and show "
                     "them, with what becomes irreversible and the exact espefuse command. "
                     f"Nothing is burned without --burn {fuse.CONFIRM_FLAG}; a step already "
                     "true on the chip is never burned again.",
                     epilog=reasons.epilog(*_EXIT))
    _target_args(h)
    h.add_argument("--profile", required=True, choices=fuse.PROFILES)
    h.add_argument("--jtag", choices=["keep", "disable"], help="override the profile")
    h.add_argument("--uart-download", choices=["keep", "secure", "disabled"],
                   help="override the profile (ESP32: keep or disabled)")
    h.add_argument("--no-pin", action="store_true", help="do not pin the trust anchors")
    h.add_argument("--no-pin-lock", action="store_true",
                   help="do not write-protect the pin's block")
    h.add_argument("--flash-encryption", metavar="off|chip|KEYFILE",
                   help="chip: the bootloader makes the key; KEYFILE: a 32-byte key to burn")
    h.add_argument("--secure-boot", metavar="off|PEM", help="secure boot v2 public key to burn "
                   "the digest of")
    g = h.add_mutually_exclusive_group()
    g.add_argument("--dry-run", action="store_true", help="show the plan only (the default)")
    g.add_argument("--burn", action="store_true", help=f"burn (needs {fuse.CONFIRM_FLAG})")
    h.add_argument(fuse.CONFIRM_FLAG, dest="confirmed", action="store_true",
                   help="confirm that the burns cannot be undone")
    h.set_defaults(func=run_harden)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def _target_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--port", help="serial port, or sim:NAME (the virtual board's eFuse file)")
    g.add_argument("--efuse-file", metavar="F", help="an `espefuse --virt` eFuse file")
    p.add_argument("--chip", choices=["esp32", "esp32s2", "esp32s3", "esp32c3"],
                   help="the chip (default: detected, or ESP32 for an ESP32-sized file)")
    p.add_argument("--board", metavar="KIND", help="board profile (default: the chip's)")
    p.add_argument("--project", metavar="DIR", help="project whose anchors are pinned (harden) "
                   "or shown beside the board's (status); default: found upwards")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _anchors(args: argparse.Namespace, needed: bool) -> bytes | None:
    from .. import fuse

    try:
        proj = project.find(args.project)
    except ProjectError:
        if needed or args.project:
            raise
        return None
    return fuse.anchors_bytes(proj.board_anchors())


def _target(args: argparse.Namespace) -> fuse.Target:
    from .. import fuse

    return fuse.target_for(args.port, args.efuse_file, chip=args.chip, board=args.board)


def status_text(st: fuse.FuseStatus) -> str:
    lines = [f"eFuses of {st.target.label}: {st.target.chip} (board profile {st.target.kind})"]
    for name, value in st.facts.items():
        shown = "unknown" if value is None else str(value).lower()
        if name == "anchors_pin":
            shown += " (block locked)" if st.pin["locked"] else ""
            raw = f"{st.pin['block']} words {st.pin['words']}: {st.pin['digest']}"
        else:
            raw = " ".join(f"{k}={v}" for k, v in st.raw.get(_RAW.get(name, name), {}).items())
        lines.append(f"  {name:<18} {shown:<22} {raw}")
    lines += [f"  {'':<18} {x}" for x in pin_text(st.pin)]
    return "\n".join(lines)


def pin_text(pin: dict[str, Any]) -> list[str]:
    """What the anchors pin was judged against, in words (empty for a blank pin)."""
    if pin["state"] == "unpinned":
        return []
    proj, note = pin.get("project"), pin.get("note")
    if pin.get("compared_with") == "board":
        out = ["compared with the board's anchors file /mpguard/anchors.json (what it checks "
               "at every install)"]
        if proj is not None:
            out.append(f"this project's anchors: {proj}")
        return out
    why = f" ({note})" if note else " (the board's were not read)"
    if pin.get("compared_with") == "project":
        return [f"compared with the project's anchors, not the board's{why}"]
    return [f"not compared: no project, and the board's anchors were not read{why}"]


_RAW = {"jtag": "jtag_disable", "uart_download": "uart_download_disable",
        "key_read_protect": "key_protect"}


def run_status(args: argparse.Namespace) -> Result:
    from .. import fuse

    st = fuse.status(_target(args), _anchors(args, needed=False), board_anchors=True)
    return Result(st.as_dict(), status_text(st))


def plan_text(p: fuse.Plan) -> str:
    from .. import fuse

    lines = [f"eFuse hardening plan: profile {p.profile} on {p.target.chip}, {p.target.label}"]
    n = 0
    for s in p.steps:
        if s.done:
            lines.append(f"   -  {s.fact:<18} {s.what}: already so on this chip, not burned again")
            continue
        n += 1
        lines.append(f"  {n:>2}. {s.fact:<18} {s.what}")
        lines.append(f"      {'':<18} irreversible: {s.effect}")
    lines += [f"  note: {x}" for x in p.notes]
    argv = p.argv()
    if argv is None:
        lines.append("nothing to burn: the chip already has every step of this profile")
        return "\n".join(lines)
    lines.append("the command (espefuse burns it all in one batch):")
    lines.append("  " + fuse.espefuse.shell_line(argv))
    for path, data in p.files.items():
        lines.append(f"  {Path(path).name}: {len(data)} bytes {data.hex()}")
    return "\n".join(lines)


def run_harden(args: argparse.Namespace) -> Result:
    from .. import fuse

    choices = {"jtag": args.jtag, "uart_download": args.uart_download,
               "flash_encryption": args.flash_encryption, "secure_boot": args.secure_boot}
    if args.no_pin:
        choices.update(pin=False, pin_lock=False)
    elif args.no_pin_lock:
        choices["pin_lock"] = False
    anchors = None if args.no_pin else _anchors(args, needed=True)
    plan = fuse.plan(_target(args), args.profile, anchors=anchors, board_anchors=True,
                     **choices)
    text = plan_text(plan)
    data = {"dry_run": not args.burn, "plan": plan.as_dict(), "burned": None}
    if not args.burn:
        if plan.argv():
            text += (f"\ndry run: nothing was burned. To burn: --burn {fuse.CONFIRM_FLAG}")
        return Result(data, text)
    if not args.confirmed:
        if not args.json:
            print(text, file=sys.stderr)  # the dry run is always shown before a refusal
        raise fuse.FuseError("not_confirmed")
    if not args.json:
        print(text, flush=True)  # the dry run first, then the burn
    res = fuse.burn(plan, confirmed=True, anchors=anchors)
    data["burned"] = res.as_dict()
    if not res.burned:
        return Result(data, "nothing burned")
    after = ("not read back (secure download mode: espefuse cannot read this chip any more; "
             "attest it)" if res.after is None else "\n" + status_text(res.after))
    return Result(data, f"burned {len(res.burned)} step(s) in {res.seconds:.1f} s; now: {after}")
