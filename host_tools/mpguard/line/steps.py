"""The steps a board goes through, each on the library function its command uses.

    firmware   esptool write-flash (a real board; on a virtual board it does not apply)
    agent      mpguard.agent.install
    provision  mpguard.identity.provision (the key is born on the board)
    harden     mpguard.fuse: plan (the dry run, recorded), then burn; a burned step is never
               burned again (the plan sees it done on the chip)
    deploy     mpguard.updates.deploy: the app must end confirmed
    attest     mpguard.attest.run: the verdict must be one the station accepts

A step returns its detail (recorded in the inventory and the traveller) or raises a typed
error, which fails the board with its reason. `Board` is what a step works on.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import fuse, project
from ..agent import install as agent_install
from ..errors import LineError
from ..link import BoardLink
from .ports import Port
from .station import Station

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class Context:
    """What every board of a station shares (read-only once the station runs)."""

    station: Station
    project: project.Project
    passphrase: bytes | None
    inventory: Any  # mpguard.inventory.Inventory
    anchors: dict[str, Any]
    bundle: bytes | None = None
    release: dict[str, Any] | None = None  # the bundle's verified manifest (app, version, seq)
    policy: Any = None
    burn: bool = False  # the operator confirmed the irreversible harden step
    # a station drives many boards at once from one PC: a board's raw REPL may take longer to
    # answer than on a desk (BoardLink's own default is 10 s)
    link_timeout: float = 30.0


@dataclass
class Board:
    ctx: Context
    port: Port
    progress: Progress
    ueid: str | None = None
    kind: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    _link: BoardLink | None = None

    @property
    def virtual(self) -> bool:
        return self.port.sim is not None

    def link(self) -> BoardLink:
        if self._link is None:
            self._link = BoardLink(self.port.device, connect_timeout=self.ctx.link_timeout)
        return self._link

    def close(self) -> None:
        if self._link is not None:
            link, self._link = self._link, None
            try:
                link.close()
            except Exception:  # noqa: BLE001 - a board pulled out: closing may fail too
                pass


def firmware(b: Board, cfg: dict[str, Any]) -> dict[str, Any]:
    data = Path(cfg["file"]).read_bytes()
    info = {"file": Path(cfg["file"]).name, "sha256": hashlib.sha256(data).hexdigest()}
    b.versions["firmware"] = info
    if b.virtual:
        return {**info, "applies": False,
                "why": "a virtual board has no ROM loader: its firmware is the sim's"}
    b.close()  # esptool opens the port itself
    exe = Path(sys.executable).parent / "esptool"
    cmd = [str(exe) if exe.exists() else "esptool", "--port", b.port.device,
           "--baud", str(cfg.get("baud", 460800)), "write-flash",
           hex(cfg.get("address", 0x1000)), str(cfg["file"])]
    # its own session: a Ctrl-C at the terminal does not cut a flash write short
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    if res.returncode != 0:
        raise LineError("step_failed", "esptool: " + (res.stdout + res.stderr).strip()[-200:])
    return {**info, "applies": True, "address": cfg.get("address", 0x1000)}


def agent(b: Board, cfg: dict[str, Any]) -> dict[str, Any]:
    n = 0

    def put(path: str) -> None:
        nonlocal n
        n += 1
        b.progress("agent", n, 0)

    rep = agent_install.install(b.link(), b.ctx.anchors, kind=b.ctx.station.board, progress=put)
    b.kind = rep.board_kind
    return {"kind": rep.board_kind, "format": rep.format, "written": len(rep.written),
            "unchanged": len(rep.unchanged)}


def provision(b: Board, cfg: dict[str, Any]) -> dict[str, Any]:
    try:
        from ..identity import provision as prov  # type: ignore[attr-defined]
    except ImportError:
        raise LineError("not_available", "device identity (mpguard provision)") from None
    st = b.ctx.station
    res = prov.provision(b.link(), b.ctx.project, passphrase=b.ctx.passphrase,
                         days=cfg.get("days"), inventory=b.ctx.inventory, batch=st.batch,
                         station=st.name, kind=b.kind or st.board, by=st.operator)
    b.kind = res.board_kind
    b.ueid = res.ueid
    return {"outcome": res.outcome, "ueid": res.ueid, "kid": res.kid, "serial": res.serial,
            "kind": res.board_kind}


def harden(b: Board, cfg: dict[str, Any]) -> dict[str, Any]:
    if not b.virtual:
        b.close()  # espefuse opens the port itself
    choices = {k: cfg[k] for k in ("jtag", "uart_download", "pin", "pin_lock",
                                   "flash_encryption", "secure_boot") if k in cfg}
    target = fuse.target_for(f"sim:{b.port.sim}" if b.virtual else b.port.device,
                             board=b.kind if b.virtual else None)
    anchors = fuse.anchors_bytes(b.ctx.anchors)
    plan = fuse.plan(target, cfg["profile"], anchors=anchors, **choices)
    argv = plan.argv()
    detail: dict[str, Any] = {
        "profile": cfg["profile"], "chip": plan.target.chip,
        "planned": [s.what for s in plan.pending],
        "already": [s.what for s in plan.steps if s.done],
        "command": fuse.espefuse.shell_line(argv) if argv else None}
    if not b.ctx.burn:
        raise LineError("step_failed", "harden: dry run only (no burn confirmation): "
                        + ("; ".join(detail["planned"]) or "nothing to burn"))
    res = fuse.burn(plan, confirmed=True, anchors=anchors)
    detail["burned"] = res.burned
    if res.after is not None:
        detail["facts"] = res.after.facts
    return detail


def deploy(b: Board, cfg: dict[str, Any]) -> dict[str, Any]:
    from ..updates import deploy as dep

    data = b.ctx.bundle
    assert data is not None
    res = dep.deploy(b.link(), data, progress=lambda d, t: b.progress("deploy", d, t),
                     wait=float(cfg.get("wait", 30)))
    m = b.ctx.release or {}
    if res.outcome == "refused" and res.reason == "replay":
        # this very release is confirmed on the board already (a run cut short after it)
        st = b.link().call("update.status")
        if st.get("seq") == m.get("seq") and st.get("app") == m.get("app") and not st.get("trial"):
            res.outcome, res.status = "confirmed", st
    if res.outcome != "confirmed":
        raise LineError("deploy_failed", f"{res.outcome}: {res.reason or ''}".rstrip(": "))
    st = res.status
    b.versions["app"] = {"name": st.get("app"), "version": st.get("ver"), "seq": st.get("seq")}
    return {"app": st.get("app"), "version": st.get("ver"), "seq": st.get("seq"),
            "bytes": res.bytes, "seconds": round(res.seconds, 2)}


def attest(b: Board, cfg: dict[str, Any]) -> dict[str, Any]:
    from ..attest import run, store

    att = run.attest(b.link(), store.Store(b.ctx.inventory), b.ctx.policy)
    failed = [r.rule for r in att.appraisal.results if r.outcome == "fail"]
    warned = [r.rule for r in att.appraisal.results if r.outcome == "warn"]
    mp = att.evidence.facts.get("micropython")
    if mp is not None and mp.status == "ok":
        b.versions["micropython"] = mp.value
    detail = {"verdict": att.verdict, "policy": att.appraisal.policy, "failed": failed,
              "warned": warned, "nonce": att.nonce}
    b.versions["attestation"] = {"verdict": att.verdict, "policy": att.appraisal.policy,
                                 "failed": failed}
    if att.verdict not in cfg.get("accept", ["pass", "warn"]):
        raise LineError("attest_failed", ", ".join(failed) or att.verdict)
    return detail


RUN: dict[str, Callable[[Board, dict[str, Any]], dict[str, Any]]] = {
    "firmware": firmware, "agent": agent, "provision": provision, "harden": harden,
    "deploy": deploy, "attest": attest,
}
