"""Deploy's outcomes in words: what happened, with the numbers behind it, and what to do.

`explain(result)` gives the headline, the detail lines and a hint for a `DeployResult`:
- refused: the reason (mpguard.reasons) with the numbers that decided it: the board's
  confirmed sequence against the bundle's, the board's kind against the bundle's targets, the
  board's agent version against the bundle's minimum, the signer against the board's anchors;
- still on trial: which app waits for confirmation, and why nothing confirmed it;
- rolled back: what the board runs now (no app at all after a failed first install), and
  what the board printed on the app's last trial boot (its traceback).
Everything the bundle or the board says is printed through `printable`: a bundle is not yet
verified when it is refused, and a board prints what its app likes.
"""

from __future__ import annotations

import time
from typing import Any

from .. import reasons
from .bundle import printable
from .deploy import DeployResult

_MAX_LINES = 25  # of board output shown after a rollback


def app_label(d: dict[str, Any]) -> str:
    """"demo 2.0.0 (sequence 2)" for a status, trial, last-result or bundle dict."""
    if not d or d.get("app") is None:
        return "no app"
    return f"{printable(d.get('app'))} {printable(d.get('ver'))} (sequence {printable(d.get('seq'))})"


def board_label(res: DeployResult) -> str:
    b = res.board
    who = ", ".join(x for x in (f"uid {b['uid']}" if b.get("uid") else "",
                                printable(b["board_kind"]) if b.get("board_kind") else "") if x)
    return f"{res.port} ({who})" if who else res.port


def _targets(t: Any) -> str:
    return ", ".join(printable(k) for k in t) if isinstance(t, list) else printable(t)


def _numbers(res: DeployResult) -> tuple[str | None, str | None]:
    """(the numbers behind a refusal, a hint with them) for the reasons that have numbers."""
    b, before, board = res.bundle, res.before, res.board
    seq, have = printable(b.get("seq")), before.get("seq")
    runs = f" ({app_label(before)})" if before.get("app") else ""
    if res.reason == "replay":
        return (f"the board's confirmed sequence is {have}{runs}; the bundle's is {seq}",
                f"build a new release: its sequence must be above {have} "
                "(`mpguard release build` takes the project's next one)")
    if res.reason == "rollback":
        return (f"the board's confirmed sequence is {have}{runs}; the bundle's is {seq}, lower",
                f"build a new release: its sequence must be above {have}")
    if res.reason == "wrong_target":
        kind = printable(board.get("board_kind") or res.detail)
        return (f"the board is a {kind} board; the bundle is for {_targets(b.get('targets'))}",
                f"build the release for this board: `mpguard release build ... --target {kind}`")
    if res.reason == "agent_too_old":
        return (f"the board's agent is {printable(board.get('agent'))}; the bundle needs "
                f"{printable(b.get('agent'))} or later",
                f"update the agent: `mpguard agent install --port {res.port}`")
    if res.reason == "expired" and isinstance(b.get("exp"), int):
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(b["exp"]))
        return f"the bundle expired on {when}", None
    if res.reason == "unknown_key":
        trusted = ", ".join(printable(k) for k in res.anchors) or "no key"
        return (f"the bundle is signed by {printable(b.get('kid'))}; the board trusts {trusted}",
                "sign it with the release key of the project whose anchors the board holds "
                "(the board trusts only those). Should the board trust another project, run "
                "`mpguard agent install --force` from that project")
    return None, None


def board_output(console: str) -> list[str]:
    """What the board printed on the app's last trial boot (after the last `guard: trial`
    line, up to the next reset), escaped; empty when that boot's output was not seen."""
    lines = console.replace("\r", "").split("\n")
    starts = [i for i, ln in enumerate(lines) if "guard: trial" in ln]
    if not starts:
        return []
    out = []
    for ln in lines[starts[-1] + 1:]:
        if "guard: " in ln or "rst:0x" in ln or ln.startswith("ets "):
            break
        if ln.strip():
            out.append(printable(ln, 200))
    return out[-_MAX_LINES:]


def explain(res: DeployResult) -> tuple[str, list[str], str | None]:
    """(headline, detail lines, hint) of a deploy's result."""
    where = board_label(res)
    st, lines = res.status, []
    if res.outcome == "refused":
        reason = str(res.reason)
        numbers, hint = _numbers(res)
        head = f"refused by the board {where}: {reasons.message(reason, res.detail)}"
        if numbers:
            lines.append(numbers)
        lines.append("nothing was changed on the board")
        return head, lines, hint or reasons.hint(reason) or None
    if res.outcome == "confirmed":
        tr = res.transfer
        if tr.get("compressed"):  # docs/decisions/0017-transfer-window-and-deflate.md
            lines.append(f"sent {tr['bytes']} B compressed to {tr['wire_bytes']} B "
                         f"in {tr['seconds']} s")
        return (f"confirmed: {app_label(st)} runs on {where} ({res.seconds:.1f} s)", lines, None)
    if res.outcome == "trial":
        trial = st.get("trial") or {}
        boots = f"trial boot {trial.get('boots')}" if trial.get("boots") else "not booted yet"
        head = (f"still on trial: {app_label(trial)} is installed on {where} but not confirmed "
                f"({boots})")
        had = app_label(st) if st.get("app") else None
        lines.append(f"the board's confirmed app: {had}" if had else
                     "the board has no confirmed app yet: this is its first")
        if (trial.get("confirm") or 0) > 0:
            hint = (f"the agent confirms it after {trial['confirm']} s of healthy running: "
                    "deploy with a longer --wait, or check the app does not crash")
        else:
            after = (f"rolls back to {had}" if had else
                     "rolls it back and, with no earlier app, runs no app at all")
            hint = ("nothing confirms it: the app must call guard.confirm() once it is healthy, "
                    "or build the release with --confirm-after SECONDS. Each reset is a trial "
                    f"boot; after its last one the board {after}")
        return head, lines, hint
    if res.outcome == "rolled_back":
        last = st.get("last") or {}
        times = f" {last['boots']} times" if last.get("boots") else ""
        now = (f"the board runs {app_label(st)}" if st.get("app") else
               "the board now runs no app: it had none confirmed before this one")
        head = f"rolled back: {app_label(last)} failed its trial{times} on {where}; {now}"
        out = board_output(res.console)
        if out:
            lines.append("what the board printed on the app's last trial boot:")
            lines += [f"  | {ln}" for ln in out]
        else:
            lines.append("(the board's output of its trial boots was not seen)")
        return head, lines, ("fix the app and build a new release; the board's sequence is "
                             f"still {st.get('seq')}, so the next release installs")
    return (f"unknown: the board's agent reports neither a trial nor a result for sequence "
            f"{printable(res.bundle.get('seq'))} on {where}", [f"its state: {printable(st, 300)}"],
            "run `mpguard status` to see what the board runs")
