"""Mutual TLS with the board's identity: a Python `ssl` server on 127.0.0.1 that requires a
client certificate from the project's device CA (and checks its CRL), and an app on the
virtual board that connects with its key and certificate through MicroPython's `ssl`
(guard.identity.tls_context). A provisioned board is let in; a revoked one and one whose
certificate another CA issued are refused by the server."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from idhelp import Proj

from mpguard.identity import ca as device_ca
from mpguard.identity import devices, records
from mpguard.identity import provision as prov

pytestmark = pytest.mark.timeout(300)

# The app: connect with the board's identity, say hello, print what the server answers.
APP = """\
import socket
from guard import identity
ctx = identity.tls_context(open('/server-ca.der', 'rb').read())
s = socket.socket()
s.connect(socket.getaddrinfo('127.0.0.1', {port})[0][-1])
try:
    t = ctx.wrap_socket(s, server_hostname='localhost')
    t.write(b'hello from the board\\n')
    print('GOT', t.read(64))
    t.close()
except OSError as e:
    print('TLS FAILED', e)
s.close()
"""


class ServerPKI:
    """A server CA and a certificate for `localhost` (what a real service would have)."""

    def __init__(self, tmp):
        now = dt.datetime.now(dt.UTC)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test server CA")])
        self.ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(self.ca_key.public_key()).serial_number(1)
                   .not_valid_before(now - dt.timedelta(hours=1))
                   .not_valid_after(now + dt.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(self.ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
                .issuer_name(name).public_key(key.public_key()).serial_number(2)
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                               critical=False)
                .sign(self.ca_key, hashes.SHA256()))
        self.cert_file = tmp / "server.pem"
        self.key_file = tmp / "server-key.pem"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_file.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self.ca_der = self.ca.public_bytes(serialization.Encoding.DER)


class Server:
    """One TLS connection: client certificate required, the device CA and its CRL as trust."""

    def __init__(self, pki: ServerPKI, device_ca_file, crl_file=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.cert_file, pki.key_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(device_ca_file))
        if crl_file is not None:
            ctx.load_verify_locations(cafile=str(crl_file))
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(60)
        self.port = self.sock.getsockname()[1]
        self.peer_cn: str | None = None
        self.got: bytes | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError as e:
            self.error = f"accept: {e}"
            return
        conn.settimeout(30)
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as t:
                cert = t.getpeercert()
                self.peer_cn = dict(x[0] for x in cert["subject"])["commonName"]
                self.got = t.recv(64)
                t.sendall(b"hello " + self.peer_cn.encode())
        except (ssl.SSLError, OSError) as e:
            self.error = str(e)
        finally:
            conn.close()
            self.sock.close()

    def wait(self) -> None:
        self.thread.join(60)


def connect(board, server: Server) -> str:
    board.soft_reset()
    return board.exec(APP.format(port=server.port), timeout=60)


@pytest.fixture
def pki(tmp_path) -> ServerPKI:
    return ServerPKI(tmp_path)


def test_mutual_tls_with_the_board_identity(sim, board, tmp_path, pki):
    p = Proj(tmp_path / "proj")
    res = prov.provision(board, p.proj, passphrase=None)
    board.put(pki.ca_der, "/server-ca.der")
    ca_file = p.root / device_ca.CERT_PATH
    crl_file = p.root / device_ca.CRL_PATH

    # 1. provisioned: the server lets the board in and knows it by its UEID
    srv = Server(pki, ca_file, crl_file)
    out = connect(board, srv)
    srv.wait()
    assert srv.error is None, (srv.error, out)
    assert srv.peer_cn == res.ueid and srv.got == b"hello from the board\n"
    assert f"GOT b'hello {res.ueid}'" in out

    # 2. revoked (devices revoke signs the CRL again): the server refuses the board
    with records.open_inventory(p.root) as inv:
        (dev,) = inv.devices()
        devices.revoke(inv, device_ca.DeviceCA(p.root, None), dev, "keyCompromise")
    srv = Server(pki, ca_file, crl_file)
    out = connect(board, srv)
    srv.wait()
    assert srv.error is not None and "revoked" in srv.error, (srv.error, out)
    assert srv.got is None and "GOT b'hello" not in out

    # 3. a board with a certificate from another project's CA: refused
    other = Proj(tmp_path / "other")
    prov.provision(board, other.proj, passphrase=None, force=True)
    srv = Server(pki, ca_file, crl_file)
    out = connect(board, srv)
    srv.wait()
    assert srv.error is not None and "certificate" in srv.error.lower(), (srv.error, out)
    assert srv.got is None and "GOT b'hello" not in out
    # ... which that project's own server lets in
    srv = Server(pki, other.root / device_ca.CERT_PATH, other.root / device_ca.CRL_PATH)
    out = connect(board, srv)
    srv.wait()
    assert srv.error is None and srv.got == b"hello from the board\n", (srv.error, out)
