"""An mpguard project folder: config, release signing key, trust anchors, release record.

Layout made by `mpguard init DIR` (docs/init.md)::

    DIR/mpguard.json          config (JSON): targets, min agent version, file names below
    DIR/keys/release-1.pem    release signing key (ES256), PEM, encrypted unless opted out
    DIR/anchors.json          the trust-anchor set a board holds: {"v": 1, "keys": {kid: b64u}},
                              with "ops" (operator keys), "ver" and "k" once the project has them
    DIR/keys/operator-1.pem   the operator key that signs secret commands (mpguard.rotate.operator),
                              encrypted as the release key
    DIR/anchors-statements.json  the trust-anchor statements made so far (mpguard.rotate.anchors)
    DIR/releases.json         every bundle built: the sequence record (never goes back)
    DIR/keys/device-ca.pem, DIR/devices-ca.pem, DIR/devices-ca-crl.pem
                              the device CA (mpguard.identity.ca), key encrypted as above

Commands find the project from the current folder upwards, or from `--project DIR`.
Sequence numbers are one counter for the whole project, so they are monotonic per app and
a board moved from one app of the project to another never sees a rollback.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ProjectError
from .files import b64u_dec, b64u_enc, write_json

CONFIG_NAME = "mpguard.json"
CONFIG_VERSION = 1
DEFAULT_TARGETS = ("esp32",)
DEFAULT_MIN_AGENT = "0.1.0"
# What `init` keeps out of git: private keys (and, once there, the inventory database).
# What never goes into git: private keys (keys/*.pem: release, operator, device CA and station
# keys), the local inventory, the release lock, and the production line's local files
# (line/NAME.journal: steps not yet in the inventory; line/NAME/: the --sims boards' eFuse
# files). The station files, anchors, config, releases.json and CA certificate/CRL go in.
GITIGNORE = ("keys/*.pem", "*.key", "inventory.db*", ".releases.lock", "line/*.journal",
             "line/*/")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ProjectError(f"{what} missing: {path}") from None
    except (OSError, ValueError) as e:
        raise ProjectError(f"{what} unreadable: {path}: {e}") from None


@dataclass
class Project:
    root: Path
    config: dict[str, Any]

    @property
    def targets(self) -> list[str]:
        return list(self.config["targets"])

    @property
    def min_agent(self) -> str:
        return str(self.config.get("min_agent", DEFAULT_MIN_AGENT))

    @property
    def anchors_path(self) -> Path:
        return self.root / self.config["anchors"]

    @property
    def releases_path(self) -> Path:
        return self.root / self.config["releases"]

    def key_entry(self, kid: str | None = None) -> dict[str, Any]:
        """The release key's config entry: the first one, or the one with `kid`."""
        keys = self.config["release_keys"]
        for k in keys:
            if kid is None or k["kid"] == kid:
                return dict(k)
        raise ProjectError(f"no release key with kid {kid}")

    def release_key(self, passphrase: bytes | None) -> Any:
        """Load the release signing key (the passphrase is needed if it is encrypted)."""
        from . import keys

        entry = self.key_entry()
        if entry.get("encrypted") and not passphrase:
            raise ProjectError(
                f"the release key is encrypted: set {keys.PASSPHRASE_ENV} or type the passphrase")
        path = self.root / entry["path"]
        key = keys.load_private(path, passphrase if entry.get("encrypted") else None)
        # The file may have been replaced by another key (another project's, an old one):
        # signing with it would make bundles every board refuses (unknown_key) while the
        # summary names the configured kid. Only kids (public thumbprints) are printed.
        kid = keys.thumbprint(key)
        if kid != entry["kid"]:
            e = ProjectError(f"{path} is not the project's release key: its key is {kid}, "
                             f"{CONFIG_NAME} names {entry['kid']}")
            e.hint = "put the project's own release key back (from its backup)"
            raise e
        if kid not in self.anchors():
            e = ProjectError(f"the release key {kid} is not one of the project's trust "
                             f"anchors ({self.anchors_path}): boards would refuse its bundles")
            if (self.root / "anchors-rotation.pending.json").exists():  # rotate.anchors.PENDING
                e.hint = ("an `anchors rotate` was cut short: `mpguard anchors status` finishes "
                          "it, then build again")
            raise e
        return key

    def anchors(self) -> dict[str, bytes]:
        """The trust-anchor set: kid -> 65-byte uncompressed P-256 public key."""
        return load_anchor_file(self.anchors_path)

    def board_anchors(self) -> dict[str, Any]:
        """What a board holds as /mpguard/anchors.json: the release anchors and, once the
        project has them, its operator keys ("ops"), the set's version ("ver") and the
        threshold of a trust-anchor statement ("k"). Without those it is exactly
        anchor_set(the release keys), as before."""
        return load_board_anchors(self.anchors_path)

    def add_operator_key(self, passphrase: bytes | None) -> dict[str, Any]:
        """`mpguard secret init`: give a project made before operator keys its first one
        (keys/operator-N.pem, its public key in the anchors' "ops"); returns its entry."""
        from .rotate import operator

        if self.config.get("operator_keys"):
            raise ProjectError(f"the project has an operator key already "
                               f"({self.config['operator_keys'][0]['kid']})")
        n = 1
        while (self.root / operator.PATH.format(n=n)).exists():
            n += 1
        entry, pub = operator.make(self.root, passphrase, n)
        doc = self.board_anchors()
        doc["ops"] = {**doc.get("ops", {}), entry["kid"]: b64u_enc(pub)}
        write_json(self.anchors_path, doc)
        self.config["operator_keys"] = [entry]
        write_json(self.root / CONFIG_NAME, self.config)
        return entry

    def releases(self) -> dict[str, Any]:
        if not self.releases_path.exists():
            return {"last_seq": 0, "apps": {}}
        data = _read_json(self.releases_path, "release record")
        if not isinstance(data, dict) or not isinstance(data.get("last_seq"), int):
            raise ProjectError(f"release record is malformed: {self.releases_path}")
        return data

    @property
    def confirm_after(self) -> int:
        """The project's default healthy time (s) after which boards confirm an update
        themselves; 0: the app must call guard.confirm()."""
        v = self.config.get("confirm_after", 0)
        if type(v) is not int or v < 0:
            raise ProjectError(f"confirm_after in {CONFIG_NAME} must be a whole number of seconds")
        return v

    @contextlib.contextmanager
    def release_lock(self) -> Iterator[None]:
        """Held while a sequence number is chosen and recorded: two `release build` runs at
        once never get the same one."""
        fd = os.open(self.root / ".releases.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def next_sequence(self, app: str) -> int:
        """The sequence number the next bundle gets: above every one issued before."""
        return int(self.releases()["last_seq"]) + 1

    def record_release(self, app: str, seq: int, version: str, manifest_sha256: str,
                       measurement: str | None = None) -> None:
        """Remember a built bundle; its sequence must be above every earlier one.
        `measurement` (jose.measurement) is what a board records and reports for it."""
        rec = self.releases()
        if seq <= rec["last_seq"]:
            raise ProjectError(
                f"sequence {seq} is not above the last issued ({rec['last_seq']})")
        rec["last_seq"] = seq
        hist = rec["apps"].setdefault(app, [])
        entry = {"seq": seq, "version": version, "manifest_sha256": manifest_sha256,
                 "time": int(time.time())}
        if measurement:
            entry["measurement"] = measurement
        hist.append(entry)
        write_json(self.releases_path, rec)


def load_anchor_file(path: Path) -> dict[str, bytes]:
    """Read a trust-anchor set file ({"v": 1, "keys": {kid: base64url(65 bytes)}})."""
    data = _read_json(path, "trust anchors")
    try:
        if data["v"] != 1:
            raise ValueError("version")
        out = {str(k): b64u_dec(v) for k, v in data["keys"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ProjectError(f"trust anchors malformed: {path}: {e}") from None
    for kid, pub in out.items():
        if len(pub) != 65 or pub[0] != 4:
            raise ProjectError(f"trust anchor {kid} is not a 65-byte P-256 public key")
    return out


def load_board_anchors(path: Path) -> dict[str, Any]:
    """The whole anchors file, checked: release keys, and the optional ops, ver, k."""
    keys = load_anchor_file(path)
    data = _read_json(path, "trust anchors")
    doc: dict[str, Any] = {"v": 1, "keys": {k: b64u_enc(v) for k, v in keys.items()}}
    try:
        if "ops" in data:
            ops = {str(k): b64u_dec(v) for k, v in data["ops"].items()}
            if any(len(p) != 65 or p[0] != 4 for p in ops.values()):
                raise ValueError("an operator key is not a 65-byte P-256 public key")
            doc["ops"] = {k: b64u_enc(v) for k, v in ops.items()}
        for name in ("ver", "k"):
            if name in data:
                if type(data[name]) is not int or data[name] < 0:
                    raise ValueError(name)
                doc[name] = data[name]
    except (TypeError, ValueError, AttributeError) as e:
        raise ProjectError(f"trust anchors malformed: {path}: {e}") from None
    return doc


def anchor_set(public_keys: list[bytes]) -> dict[str, Any]:
    """The JSON a board holds as /mpguard/anchors.json for these 65-byte public keys."""
    from . import jose

    return {"v": 1, "keys": {jose.thumbprint(p): b64u_enc(p) for p in public_keys}}


def check_targets(targets: list[str]) -> None:
    """Every target is a board kind mpguard has a profile for (boards/): a board's kind comes
    from its profile, so a bundle for any other kind is refused by every board."""
    from .boards import profile_kinds

    known = profile_kinds()
    for t in targets:
        if t not in known:
            raise ProjectError(f"bad target board kind {t!r} (known: {', '.join(known)})")


def init(
    directory: str | Path = ".",
    *,
    passphrase: bytes | None,
    targets: list[str] | None = None,
    min_agent: str = DEFAULT_MIN_AGENT,
    device_ca: bool = True,
    operator_key: bool = True,
) -> Project:
    """Make `directory` an mpguard project (refuses one that already is).

    `passphrase` encrypts the release key (and the device CA's key, made unless
    `device_ca=False`, and the operator key, made unless `operator_key=False`); None stores
    them unencrypted (only on request).
    """
    from . import keys

    root = Path(directory).resolve()
    if (root / CONFIG_NAME).exists():
        raise ProjectError(f"{root} is already an mpguard project ({CONFIG_NAME} exists)")
    if passphrase is not None and not passphrase:
        raise ProjectError("an empty passphrase is not allowed (use --no-passphrase)")
    targets = list(targets or DEFAULT_TARGETS)
    check_targets(targets)
    key_rel = "keys/release-1.pem"
    if (root / key_rel).exists():
        raise ProjectError(f"{root / key_rel} exists; not overwriting a key")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where the folder would be, or a path through one
        raise ProjectError(f"cannot make the project folder {root}: {e.strerror}") from None
    key = keys.generate()
    pub = keys.public_bytes(key)
    (root / "keys").mkdir(exist_ok=True)
    keys.save_private(key, root / key_rel, passphrase, allow_plaintext=passphrase is None)
    anchors = anchor_set([pub])
    kid = next(iter(anchors["keys"]))
    config = {
        "mpguard": CONFIG_VERSION,
        "targets": targets,
        "min_agent": min_agent,
        "release_keys": [{"kid": kid, "path": key_rel, "encrypted": passphrase is not None}],
        "anchors": "anchors.json",
        "releases": "releases.json",
    }
    if operator_key:  # hook: the key that signs secret commands (mpguard.rotate.operator)
        from .rotate import operator

        entry, op_pub = operator.make(root, passphrase, 1)
        config["operator_keys"] = [entry]
        anchors["ops"] = {entry["kid"]: b64u_enc(op_pub)}
    write_json(root / "anchors.json", anchors)
    _gitignore(root)
    if device_ca:  # hook: the project's device CA (mpguard.identity.ca, docs/provision.md)
        from .identity import ca

        ca.create(root, passphrase)
    write_json(root / CONFIG_NAME, config)  # last: a project exists once complete
    return Project(root, config)


def _gitignore(root: Path) -> None:
    """Add the GITIGNORE patterns to root/.gitignore (kept: whatever the user has there)."""
    path = root / ".gitignore"
    old = path.read_text() if path.exists() else ""
    have = {ln.strip() for ln in old.splitlines()}
    missing = [p for p in GITIGNORE if p not in have]
    if missing:
        head = "" if not old or old.endswith("\n") else "\n"
        path.write_text(old + head + "# mpguard: private keys and local files never go into git\n"
                        + "".join(p + "\n" for p in missing))


def load(root: Path) -> Project:
    config = _read_json(root / CONFIG_NAME, "project config")
    if not isinstance(config, dict) or config.get("mpguard") != CONFIG_VERSION:
        raise ProjectError(f"{root / CONFIG_NAME} is not an mpguard project config")
    for k in ("targets", "release_keys", "anchors", "releases"):
        if k not in config:
            raise ProjectError(f"{root / CONFIG_NAME} lacks {k!r}")
    return Project(root, config)


def find(explicit: str | Path | None = None, start: str | Path | None = None) -> Project:
    """The project at `explicit`, or the first folder from `start` (cwd) upwards with one."""
    if explicit is not None:
        root = Path(explicit).resolve()
        if not (root / CONFIG_NAME).exists():
            raise ProjectError(f"{root} is not an mpguard project (no {CONFIG_NAME})")
        return load(root)
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / CONFIG_NAME).is_file():
            return load(d)
    raise ProjectError(
        f"no mpguard project in {here} or above (run `mpguard init`, or pass --project DIR)")


def ask_passphrase(confirm: bool = False) -> bytes:
    """The passphrase from $MPGUARD_PASSPHRASE, else typed at a prompt (never echoed)."""
    from . import keys

    return keys.passphrase("release key passphrase: ", confirm=confirm)
