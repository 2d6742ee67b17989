"""The fleet view `mpguard report` builds from the inventory: each board's latest appraisal,
per-rule counts, and the problems no single board can see:

  same_key       two boards' records hold the same public key (a cloned identity)
  same_ueid      two records hold the same UEID
                 (mpguard.inventory refuses both when a board is recorded, duplicate_key /
                 duplicate_ueid; these two check a database written by other means)
  seq_backwards  a board's update sequence went down between two attestations (rollback)
  cert_expiry    a device certificate expires within `cert_days` (or has expired)
  never_attested a board in the inventory without any attestation in the period
  key_rotated    the latest recorded token was signed with a key an identity rotation
                 superseded (attest the board again)
  bad_record     a recorded token no longer verifies with the board's key (the record was
                 altered): its claims are not shown

A board whose current certificate is revoked is shown refused (`device_revoked`), whatever
its attestations said: its key is not trusted, so neither is what it signed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import jose
from ..errors import JoseError
from .policy import OUTCOMES
from .store import ATTESTATION, REFUSED, Device, Store


@dataclass
class Board:
    ueid: str
    name: str = ""
    kid: str = ""
    verdict: str = "none"  # pass | warn | fail | refused | none (never attested)
    at: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    refused: str = ""
    attestations: int = 0


@dataclass
class Fleet:
    generated: str
    boards: list[Board] = field(default_factory=list)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    policy: str = ""

    def verdict(self) -> str:
        order = ["pass", "warn", "fail"]
        v = [b.verdict for b in self.boards]
        kinds = {p["kind"] for p in self.problems}
        if "refused" in v or kinds - {"never_attested", "key_rotated"}:
            return "fail"
        worst = max((x for x in v if x in order), key=order.index, default="pass")
        return "warn" if worst == "pass" and "key_rotated" in kinds else worst

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"verdict": self.verdict()}


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds")


def add_attestation(fleet: Fleet, b: Board, data: dict[str, Any]) -> None:
    b.verdict = str(data.get("verdict", "none"))
    b.kid = str(data.get("kid", b.kid))
    b.counts = dict(data.get("counts") or {})
    b.results = list(data.get("results") or [])
    b.facts = dict(data.get("facts") or {})
    b.claims = dict(data.get("claims") or {})
    fleet.policy = str(data.get("policy", fleet.policy))
    for r in b.results:
        row = fleet.rules.setdefault(r["rule"], {"rule": r["rule"], "title": r.get("title", ""),
                                                 "etsi": r.get("etsi", ""),
                                                 **dict.fromkeys(OUTCOMES, 0)})
        row[r["outcome"]] = row.get(r["outcome"], 0) + 1


def _claims(tok: Any, dev: Device | None) -> dict[str, Any] | None:
    # The recorded token's claims, re-verified with the board's key (None if that fails).
    if not isinstance(tok, str) or dev is None:
        return None
    try:
        _, payload = jose.verify(tok, {dev.kid: dev.public_key})
        return dict(json.loads(payload))
    except (JoseError, ValueError, TypeError):
        return None


def _claims_with(tok: Any, keys: dict[str, Any]) -> dict[str, Any] | None:
    # The recorded token's claims, verified with one of `keys` (kid -> key), or None.
    if not isinstance(tok, str) or not keys:
        return None
    try:
        _, payload = jose.verify(tok, keys)
        return dict(json.loads(payload))
    except (JoseError, ValueError, TypeError):
        return None


def build(store: Store, since: dt.datetime | None = None, cert_days: int = 30,
          now: dt.datetime | None = None) -> Fleet:
    now = now or dt.datetime.now(dt.UTC)
    fleet = Fleet(_iso(now))
    devices = store.devices()
    by_ueid_dev = {d.ueid_hex: d for d in devices}
    boards: dict[str, Board] = {}
    for d in devices:
        boards.setdefault(d.ueid_hex, Board(d.ueid_hex, d.name, d.kid))
    history: dict[str, list[Any]] = defaultdict(list)
    last: dict[str, dt.datetime] = {}  # each board's latest attestation shown
    for e in store.events(kind=ATTESTATION):
        history[e.ueid].append(e)
    for ueid, evs in history.items():
        seqs = [(e.at, dict(e.data.get("facts") or {}).get("update_seq", {}).get("value"))
                for e in evs]
        seqs = [(t, s) for t, s in seqs if isinstance(s, int)]
        for (_, prev), (t1, cur) in zip(seqs, seqs[1:], strict=False):
            if cur < prev:
                fleet.problems.append({"kind": "seq_backwards", "boards": [ueid],
                                       "detail": f"update sequence {prev} -> {cur} ({_iso(t1)})"})
        recent = [e for e in evs if since is None or e.at >= since]
        b = boards.setdefault(ueid, Board(ueid))
        b.attestations = len(recent)
        if recent:
            b.at, last[ueid] = _iso(recent[-1].at), recent[-1].at
            add_attestation(fleet, b, recent[-1].data)
            claims = _claims(recent[-1].data.get("token"), by_ueid_dev.get(ueid))
            if claims is None and by_ueid_dev.get(ueid) is not None:
                # signed before an identity rotation: the key its certificate superseded
                old = store.superseded_keys(bytes.fromhex(ueid))
                claims = _claims_with(recent[-1].data.get("token"), old)
                if claims is not None:
                    fleet.problems.append({
                        "kind": "key_rotated", "boards": [ueid],
                        "detail": "its latest attestation was signed with the key its identity "
                                  "rotation replaced: attest it again"})
            if claims is None:
                fleet.problems.append({"kind": "bad_record", "boards": [ueid],
                                       "detail": "the recorded token does not verify with the "
                                                 "board's key"})
            b.claims = claims or {}
    for e in store.events(kind=REFUSED, since=since):
        b = boards.setdefault(e.ueid, Board(e.ueid))
        if e.ueid not in last or e.at > last[e.ueid]:  # to the microsecond, not the second
            b.verdict, b.refused, b.at = "refused", str(e.data.get("reason", "")), _iso(e.at)
            last[e.ueid] = e.at
    for d in devices:
        if d.revoked is not None:  # as `mpguard attest` refuses its tokens
            b = boards[d.ueid_hex]
            b.verdict, b.refused = "refused", "device_revoked"
    by_kid: dict[str, list[str]] = defaultdict(list)
    by_ueid: dict[str, int] = defaultdict(int)
    for d in devices:
        by_kid[d.kid].append(d.ueid_hex)
        by_ueid[d.ueid_hex] += 1
        if d.cert_not_after is not None and d.cert_not_after - now < dt.timedelta(days=cert_days):
            left = (d.cert_not_after - now).days
            fleet.problems.append({"kind": "cert_expiry", "boards": [d.ueid_hex],
                                   "detail": f"certificate expires {_iso(d.cert_not_after)} "
                                             f"({'expired' if left < 0 else f'in {left} days'})"})
    for kid, ueids in by_kid.items():
        if len(ueids) > 1:
            fleet.problems.append({"kind": "same_key", "boards": sorted(ueids),
                                   "detail": f"{len(ueids)} boards share key {kid}"})
    for ueid, n in by_ueid.items():
        if n > 1:
            fleet.problems.append({"kind": "same_ueid", "boards": [ueid],
                                   "detail": f"{n} records share UEID {ueid}"})
    for b in boards.values():
        if not b.attestations and b.verdict == "none":
            fleet.problems.append({"kind": "never_attested", "boards": [b.ueid],
                                   "detail": "no attestation in the period"})
    fleet.boards = sorted(boards.values(), key=lambda b: (b.name or "", b.ueid))
    return fleet


def single(data: dict[str, Any], at: dt.datetime | None = None) -> Fleet:
    """A fleet of one board from one attestation (Attestation.as_dict()), for the reports."""
    now = at or dt.datetime.now(dt.UTC)
    fleet = Fleet(_iso(now))
    dev = data.get("device", {})
    b = Board(str(dev.get("ueid", "")), str(dev.get("name", "")), str(dev.get("kid", "")),
              at=_iso(now), attestations=1)
    add_attestation(fleet, b, data)
    fleet.boards = [b]
    return fleet
