"""`mpguard status --port P [--json]`: what the board's agent says about the board."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .. import reasons
from .common import Result, resolve_port

if TYPE_CHECKING:
    from ..agent import status as agentstatus


_MAIN = {"agent": "the agent's stub", "earlier_agent": "an earlier agent's stub",
         "other": "NOT the agent's: the board runs it, not the installed app",
         "absent": "absent: nothing runs the installed app"}


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    p = sub.add_parser(
        "status",
        help=summary,
        description="Ask the board's agent: its version, the board kind and unique id, the "
        "app it runs (version, sequence), a pending trial, the last update's result, the "
        "trust anchors (key thumbprints), and whether /main.py is the agent's. Changes nothing "
        "on the board.",
        epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE, reasons.EXIT_LINK),
    )
    p.add_argument("--port", required=True, help="serial port, or sim:NAME for a virtual board")
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.set_defaults(func=run)


def text(st: agentstatus.BoardStatus) -> str:
    from ..updates.bundle import printable
    from ..updates.explain import app_label

    u = st.update
    pr = printable
    lines = [f"board {st.port}" + (f" (uid {st.uid}, {pr(st.board_kind)})" if st.uid else "")]
    if st.agent is None:
        lines.append("  agent      none")
    else:
        lines.append(f"  agent      {pr(st.agent)} on MicroPython {pr(st.micropython)}")
        if u.get("state") == "bad":
            lines.append("  app        unknown: the agent's state file is unreadable")
        else:
            slot = f", slot {pr(u.get('active'))}" if u.get("active") else ""
            lines.append(f"  app        {app_label(u)}{slot}")
            t = u.get("trial")
            lines.append("  trial      " + (f"{app_label(t)}, trial boot {t.get('boots')}"
                                           if t else "none"))
            last = u.get("last")
            lines.append("  last       " + (f"{pr(last.get('result'))}: {app_label(last)}"
                                           if last else "none"))
        kids = st.anchors.get("kids") or []
        lines.append(f"  anchors    {', '.join(pr(k) for k in kids) or pr(st.anchors.get('file'))}")
    lines.append(f"  /main.py   {_MAIN.get(st.main_py, st.main_py)}")
    lines += [f"  warning: {w}" for w in st.warnings]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> Result:
    from ..agent import status as agentstatus
    from ..link import BoardLink

    with BoardLink(resolve_port(args.port)) as link:
        st = agentstatus.read(link)
    return Result(st.as_dict(), text(st))
