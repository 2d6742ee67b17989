"""A board's traveller: what the line did to it, signed by the station's key (JWS, ES256).

The payload (JSON): `v` (2: `ueid` in base64url; 1 had it in hex), `batch`, `station` (the
one that finished it), `operator`, `mac`, `ueid`, `kind`, `result` (pass | fail), `reason`,
`steps` (each: step, station, started, seconds, detail), `versions` (mpguard, agent, MicroPython, firmware, app), `attestation`
(verdict, policy, failed rules), `iat`. The JWS header's `kid` is the RFC 7638 thumbprint of
the station's key, which the inventory records (line_stations): `verify` checks a traveller
against it, and any JOSE library can, with the station's public key. The payload's `station`
must be the signer's recorded name. `check` also compares the verified payload with the
board's row it is stored in (batch, mac, ueid, result against the row's pass/fail, steps):
a genuine traveller on another board's row, or on a row whose status was changed, does not
verify for that board (`traveller_mismatch`).

The station key lives in the project as keys/station-NAME.pem, encrypted with the project's
passphrase like the release key (docs/keys.md), made the first time the station runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .. import __version__, jose, keys
from ..errors import LineError
from ..identity import records
from ..inventory.line import BoardRecord, Line

TYP = "mpguard-traveller+jwt"


def key_path(project_root: Path, station: str) -> Path:
    return project_root / "keys" / f"station-{station}.pem"


def station_key(project_root: Path, station: str, passphrase: bytes | None) -> Any:
    """The station's signing key (made and saved, encrypted, the first time)."""
    path = key_path(project_root, station)
    if path.exists():
        return keys.load_private(path, passphrase if keys.is_encrypted(path) else None)
    key = keys.generate()
    keys.save_private(key, path, passphrase, allow_plaintext=passphrase is None)
    return key


def payload(rec: BoardRecord, *, station: str, operator: str, kind: str | None,
            result: str, reason: str | None, versions: dict[str, Any]) -> dict[str, Any]:
    from ..agent import package

    steps = steps_of(rec)
    return {
        "v": 2, "batch": rec.batch, "station": station, "operator": operator, "mac": rec.mac,
        "ueid": ueid_shown(rec.ueid), "kind": kind, "result": result, "reason": reason, "steps": steps,
        "versions": {"mpguard": __version__, "agent": package_version(package),
                     **{k: v for k, v in versions.items() if k != "attestation"}},
        "attestation": versions.get("attestation"), "iat": int(time.time()),
    }


def ueid_shown(ueid_hex: str | None) -> str | None:
    """The inventory's UEID (hex) as mpguard shows UEIDs everywhere: base64url (RFC 9711's
    form, as in `devices list`, `provision`, the board's token)."""
    return records.ueid_b64(ueid_hex) if ueid_hex else None


def package_version(package: Any) -> str | None:
    try:
        return str(package.package_json()["version"])
    except (KeyError, TypeError, OSError):
        return None


def sign(body: dict[str, Any], key: Any) -> str:
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    return jose.sign(data, key, {"typ": TYP})


def verify(token: str, line: Line) -> dict[str, Any]:
    """The traveller's payload, if it is signed by a station the inventory knows."""
    from .. import errors

    try:
        hdr = json.loads(jose.b64u_dec(token.split(".")[0]))
    except (ValueError, IndexError, errors.JoseError):
        raise LineError("bad_station", "not a traveller") from None
    kid = hdr.get("kid") if isinstance(hdr, dict) else None
    if not isinstance(kid, str):
        raise LineError("bad_station", "not a traveller (no kid)")
    found = line.station_key(kid)
    if found is None:
        raise errors.JoseError("unknown_key")
    _, body = jose.verify(token, {kid: found[1]}, max_len=1 << 20)
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise LineError("bad_station", "not a traveller (its payload is not a JSON object)")
    if data.get("station") != found[0]:
        raise LineError("bad_station", f"the traveller names station {data.get('station')!r} "
                        f"but is signed by station {found[0]!r}'s key")
    return data


def steps_of(rec: BoardRecord) -> list[dict[str, Any]]:
    """The board's recorded steps as a traveller lists them (what `check` compares)."""
    return [{"step": s.step, "station": s.station, "started": s.started_at.isoformat(),
             "seconds": s.seconds, "detail": s.detail} for s in rec.steps]


def check(token: str, line: Line, rec: BoardRecord) -> dict[str, Any]:
    """`verify`, then the payload against the board's row it is stored in: its batch, mac
    and ueid; for a finished row (pass, fail), its result and the steps recorded. A mismatch
    is LineError `traveller_mismatch` (which field)."""
    data = verify(token, line)
    want: dict[str, Any] = {"batch": rec.batch, "mac": rec.mac, "ueid": ueid_shown(rec.ueid)}
    if rec.status in ("pass", "fail"):
        want["result"] = rec.status
        want["steps"] = _steps_key(steps_of(rec))
    got = {k: data.get(k) for k in want}
    if "steps" in got:
        got["steps"] = _steps_key(got["steps"])
    bad = [k for k in want if got[k] != want[k]]
    if bad:
        raise LineError("traveller_mismatch", "its " + ", ".join(bad) + " differ(s) from the "
                        "board's record")
    return data


def _steps_key(steps: Any) -> Any:
    """Steps compared by step, station and detail (times are shown, not compared)."""
    if not isinstance(steps, list):
        return steps
    return [(x.get("step"), x.get("station"), json.dumps(x.get("detail"), sort_keys=True))
            if isinstance(x, dict) else x for x in steps]
