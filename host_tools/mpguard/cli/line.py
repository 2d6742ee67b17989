"""`mpguard line run|status`: a production-line station, and what the inventory says of a batch."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from .. import project, reasons
from ..errors import LineError
from .common import Result, positive, seconds

if TYPE_CHECKING:
    from ..line import station


EXIT_INTERRUPTED = 130  # Ctrl-C, as every mpguard command exits on it
_RUN_EXIT = (reasons.EXIT_OK, reasons.EXIT_FAIL, reasons.EXIT_USAGE, reasons.EXIT_INVENTORY)
_RUN_EPILOG = reasons.epilog(*_RUN_EXIT, 130, said={
    reasons.EXIT_FAIL: "a board failed (or was held)",
    reasons.EXIT_INVENTORY: "inventory unreachable: boards parked (their steps in the "
                            "station's journal), or it could not be opened at the start",
    130: "interrupted (Ctrl-C): the boards stopped before their next step; the next run goes "
         "on with them"})


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    from .. import fuse  # its confirmation flag (the station's modules import fuse anyway)

    p = sub.add_parser("line", help=summary,
                       description="Run a production-line station (docs/line.md): every board "
                       "plugged in goes through the station file's steps in its own worker; "
                       "results, steps and signed travellers go to the inventory. Exit 9 from "
                       "`line run`: a board failed a step (attestation or another).",
                       epilog=_RUN_EPILOG)
    s = p.add_subparsers(dest="line_cmd", metavar="SUBCOMMAND")
    r = s.add_parser("run", help="run a station until stopped (Ctrl-C)",
                     description="Poll the ports; each board that appears runs the station's "
                     "steps (resuming from the inventory's record), shown in a live table. "
                     "Exit 0: every board passed; 9: a board failed; 7: boards parked because "
                     "the inventory could not be reached; 130: stopped by Ctrl-C (running "
                     "boards finish their step and start no other).",
                     epilog=_RUN_EPILOG)
    r.add_argument("--station", required=True, metavar="FILE", help="the station file (TOML)")
    r.add_argument("--ports", default=None, metavar="auto|P1,P2,sim:PATTERN",
                   help="where boards are (default: auto, or the --sims boards only)")
    r.add_argument("--sims", type=int, default=0, metavar="N",
                   help="start N virtual boards for this station (<station>-1..N)")
    r.add_argument("--baud", type=int, help="the --sims boards' UART rate (default unthrottled)")
    r.add_argument("--count", type=positive, metavar="N", help="stop after N boards")
    r.add_argument("--idle", type=seconds, metavar="S", help="stop after S seconds with no board "
                   "running")
    r.add_argument("--keep-sims", action="store_true", help="leave the --sims boards running")
    r.add_argument("--db", metavar="URL", help="inventory (default: the station file's)")
    r.add_argument(fuse.CONFIRM_FLAG, dest="burn", action="store_true",
                   help="the station may burn eFuses (its harden step)")
    r.add_argument("--json", action="store_true", help="JSON lines, one per event")
    r.set_defaults(func=run, json_lines=True)
    st = s.add_parser("status", help="a batch as the inventory records it",
                      description="Every board of the batch: status, last step, reason; the "
                      "travellers verified against the stations' keys. Exit 4: a finished "
                      "board's traveller does not verify (or is missing).",
                      epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE,
                                            reasons.EXIT_REFUSED, reasons.EXIT_INVENTORY))
    st.add_argument("--station", metavar="FILE", help="take batch, project and inventory from it")
    st.add_argument("--batch", metavar="B", help="the batch (default: the station file's)")
    st.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    st.add_argument("--db", metavar="URL", help="inventory (default: the project's)")
    st.add_argument("--json", action="store_true", help="print the result as one JSON object")
    st.set_defaults(func=status)
    k = s.add_parser("station", help="a station's public key (verifies its travellers)",
                     description="The public key (PEM) and kid of a station as the inventory "
                     "records them: what `line status` verifies travellers with, and what any "
                     "JOSE library needs to verify a traveller (devices export writes them). "
                     "Never the private key. Without --station or --name: every station.",
                     epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE,
                                           reasons.EXIT_INVENTORY))
    g = k.add_mutually_exclusive_group()
    g.add_argument("--station", metavar="FILE", help="the station file (name, project, inventory)")
    g.add_argument("--name", metavar="NAME", help="the station's name")
    k.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    k.add_argument("--db", metavar="URL", help="inventory (default: the project's)")
    k.add_argument("--json", action="store_true", help="print the result as one JSON object")
    k.set_defaults(func=station_key)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def run(args: argparse.Namespace) -> int:
    from ..line import ports as ports_mod
    from ..line import run as line_run
    from ..line import sims, station, view

    stn = station.load(args.station)
    if args.sims < 0 or args.sims > 64:
        raise LineError("bad_station", "--sims: 0..64")
    pw = _passphrase(stn)
    ctx, line, key = line_run.prepare(stn, passphrase=pw, burn=args.burn, inventory=args.db)
    started: list[str] = []
    try:
        if args.sims:
            started = sims.start(stn.project, stn.name, args.sims, board=stn.board, baud=args.baud)
        spec = args.ports or ("sim:" + sims.pattern(stn.name) if args.sims else "auto")
        if args.sims and args.ports:
            spec += ",sim:" + sims.pattern(stn.name)
        src = ports_mod.parse(spec)
        title = f"station {stn.name} — batch {stn.batch} — operator {stn.operator}"
        if args.json:
            out = view.JsonLines()
            sr = line_run.StationRun(ctx, line, key, src, count=args.count, idle=args.idle,
                                     on_event=out.on_event)
            summ = sr.run()
            print(json.dumps({"event": "summary", **summ.as_dict()}, sort_keys=True), flush=True)
        else:
            with view.LiveView(title) as live:
                sr = line_run.StationRun(ctx, line, key, src, count=args.count, idle=args.idle,
                                         on_event=live.on_event)
                summ = sr.run()
                live.note = view.summary_text(summ)
                live.on_event(line_run.Event("end", ""), sr.rows)
    finally:
        if started and not args.keep_sims:
            sims.stop(started)
        ctx.inventory.close()
    if summ.stopped:  # Ctrl-C: the CLI's exit code of an interrupt (mpguard.cli._main)
        print(f"mpguard: interrupted: {summ.interrupted} board(s) stopped before their next "
              "step (the next `line run` goes on with them)", file=sys.stderr)
        return EXIT_INTERRUPTED
    if summ.parked:
        return reasons.EXIT_INVENTORY
    return reasons.EXIT_FAIL if summ.failed else reasons.EXIT_OK


def _passphrase(stn: station.Station) -> bytes | None:
    proj = project.find(stn.project)
    encrypted = any(k.get("encrypted") for k in proj.config.get("release_keys", []))
    return project.ask_passphrase() if encrypted else None


def status(args: argparse.Namespace) -> Result:
    from ..inventory import Inventory
    from ..inventory.line import Line
    from ..line import station, traveller

    stn = station.load(args.station) if args.station else None
    batch = args.batch or (stn.batch if stn else None)
    if not batch:
        raise LineError("bad_station", "give --batch B or --station FILE")
    root = stn.project if stn else project.find(args.project).root
    url = args.db or (stn.inventory if stn else None)
    with Inventory.open(url, project_root=root) as inv:
        line = Line(inv)
        rows = [{"mac": r.mac, "ueid": traveller.ueid_shown(r.ueid), "status": r.status, "reason": r.reason,
                 "station": r.station, "steps": [s.step for s in r.steps],
                 "traveller": _checked(r, line)} for r in line.boards(batch=batch)]
    counts = {k: sum(1 for x in rows if x["status"] == k) for k in ("pass", "fail", "running",
                                                                    "parked")}
    bad = [x for x in rows if x["traveller"] not in (None, "valid")]
    signed = {"valid": sum(1 for x in rows if x["traveller"] == "valid"), "invalid": len(bad),
              "none": sum(1 for x in rows if x["traveller"] is None)}
    width = max([16, *(len(x["ueid"] or "") for x in rows)])
    lines = [f"batch {batch}: {len(rows)} boards, " + ", ".join(f"{v} {k}" for k, v in counts.items())]
    for x in rows:
        lines.append(f"  {x['mac']}  {x['ueid'] or '-':<{width}}  {x['status']:<7} "
                     f"{','.join(x['steps']) or '-':<40} traveller {x['traveller'] or '-':<7} "
                     f"{x['reason'] or ''}".rstrip())
    if bad:
        lines.append(f"{len(bad)} traveller(s) do not verify for their board against the "
                     "stations' recorded keys (altered in the inventory, another board's, or "
                     "not signed by a station of it): "
                     + ", ".join(f"{x['mac']} ({x['traveller']})" for x in bad))
    code = reasons.EXIT_REFUSED if bad else reasons.EXIT_OK
    return Result({"batch": batch, "boards": rows, "counts": counts, "travellers": signed},
                  "\n".join(lines), code)


def _checked(r: Any, line: Any) -> str | None:
    """`valid`, why the board's traveller does not verify for this board (its reason:
    bad_sig, unknown_key, bad_station (signed by another station than it names),
    traveller_mismatch (its result, mac, ueid, batch or steps are not the row's), ...),
    `missing` for a finished board without one, or None (not finished yet)."""
    from ..errors import InventoryError, MpguardError
    from ..line import traveller

    if not r.traveller:
        return "missing" if r.status in ("pass", "fail") else None
    try:
        traveller.check(r.traveller, line, r)
    except InventoryError:
        raise  # the inventory failed us: exit 7, not a verdict on the traveller
    except MpguardError as e:
        return str(getattr(e, "reason", None) or type(e).__name__)
    return "valid"


def station_key(args: argparse.Namespace) -> Result:
    """The stations' public keys as the inventory records them (never a private key)."""
    from .. import files, keys
    from ..inventory import Inventory
    from ..inventory.line import Line
    from ..line import station, traveller

    stn = station.load(args.station) if args.station else None
    name = stn.name if stn else args.name
    root = stn.project if stn else project.find(args.project).root
    url = args.db or (stn.inventory if stn else None)
    with Inventory.open(url, project_root=root) as inv:
        recs = Line(inv).stations(name)
    if name is not None and not recs:
        raise LineError("unknown_station", name)
    out = []
    for r in recs:
        path = traveller.key_path(root, r.name)
        out.append({"name": r.name, "kid": r.kid, "public_key": files.b64u_enc(r.public_key),
                    "public_key_pem": keys.public_pem(r.public_key),
                    "recorded_at": r.created_at.isoformat(),
                    "key_file": str(path) if path.exists() else None})
    if not out:
        return Result({"stations": out}, "no station in the inventory yet (a station records "
                      "its key at its first `mpguard line run`)")
    text = []
    for x in out:
        text += [f"station {x['name']}: kid {x['kid']} (recorded {x['recorded_at'][:19]})",
                 x["public_key_pem"].rstrip("\n")]
    return Result({"stations": out}, "\n".join(text))
