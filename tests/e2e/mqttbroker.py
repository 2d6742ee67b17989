"""A real MQTT broker on 127.0.0.1 for the rotation tests: amqtt (pinned in the test extra), in
a process of its own, password authentication from a file as a service keeps its users.

The password file has amqtt's format (`user:argon2-hash`, hashed with amqtt's own hasher) and
may hold a user twice: during a rotation the service accepts the old and the new password
(AWS practice: connect with the new credential while the old one still works), then the
operator retires the old line. It is read at every CONNECT, so a change needs no restart:
`RotatingPasswords` is amqtt's FileAuthPlugin reading its file again, nothing else.

    with Broker(tmp_path) as b:             # b.port
        b.users({"board": ["old-password"]})
        b.refused_count ...                 # from the broker's log: CONNECTs it refused
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

try:  # the broker process imports this module to find the plugin; the tests import it too
    from amqtt.plugins.authentication import FileAuthPlugin
except ImportError:  # pragma: no cover - amqtt is in the test extra
    FileAuthPlugin = object  # type: ignore[misc,assignment]


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

    return PasswordHash((Argon2Hasher(),)).hash(pw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """The broker process: started on enter, stopped on exit; its log in `log_path`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.passwords = self.folder / "passwords"
        self.passwords.write_text("")
        self.log_path = self.folder / "broker.log"
        self.proc: subprocess.Popen | None = None

    def users(self, users: dict[str, list[str]]) -> None:
        """The service's users, each with its valid passwords (hashed; written atomically)."""
        text = "".join(f"{u}:{hash_password(p)}\n" for u, pws in users.items() for p in pws)
        tmp = self.passwords.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.passwords)

    def __enter__(self) -> Broker:
        cfg = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
               "plugins": {"mqttbroker.RotatingPasswords": {"password_file": str(self.passwords)}}}
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
        self.proc = subprocess.Popen([sys.executable, __file__, json.dumps(cfg)], env=env,
                                     stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the broker stopped: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the broker did not listen within 30 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def connect(self, user: str, password: str) -> int:
        """CONNECT from the host (MQTT 3.1.1, a raw packet): the CONNACK return code (0
        accepted, 4/5 refused), or -1 when the broker closed the connection instead."""
        def s16(b: bytes) -> bytes:
            return len(b).to_bytes(2, "big") + b

        body = (s16(b"MQTT") + b"\x04\xc2\x00\x3c" + s16(b"host-check") + s16(user.encode())
                + s16(password.encode()))
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(bytes((0x10, len(body))) + body)
            got = b""
            while len(got) < 4:
                chunk = s.recv(4 - len(got))
                if not chunk:
                    return -1
                got += chunk
        return got[3] if got[0] == 0x20 else -1


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
