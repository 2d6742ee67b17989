"""`mpguard demo`: the whole story on a virtual board (see mpguard.demo)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the mpguard story on a virtual board (init, agent, "
                       "updates, rollback, a forged bundle refused)")
    p.add_argument("--dir", default="demo-project", help="project folder (recreated)")
    p.set_defaults(func=lambda a: __import__("mpguard.demo").demo.run(Path(a.dir)))
