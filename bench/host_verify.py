"""Host verification at fleet rate: ES256 verifications per second, one process, one core.

Corpus: BOARDS boards' attestation tokens made by the board code itself (guard.attest.token,
the compiled agent on the MicroPython unix port, TOKENS nonces each, one key and UEID per
board), and RELEASES release manifests made by the host signer (mpguard.updates.bundle.build)
with SIGNERS release keys. Then, in this one single-threaded process, RUNS runs of SECONDS
each of:

  attestation  mpguard.attest.verify.Verifier.verify over every token (the JWS checks, the
               signature with the board's key from the inventory, RFC 9711 claim types, UEID,
               nonce, freshness), the boards in an in-memory inventory
  release      mpguard.jose.verify of every manifest against the anchor set as a project
               holds it (kid -> 65-byte point)
  floor        cryptography's own ECPublicKey.verify on the same signatures (DER made
               beforehand, keys parsed beforehand): OpenSSL's ES256 check through
               `cryptography` on this machine, the most any of the above can do

Each figure is given per wall-clock second and per CPU second of this process (the
`process_time` clock: on a shared machine it counts only the time this process ran, so it is
what one core does), as min and median over the runs. `python -m bench.host_verify [RUNS]`.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bench import attest as board_bench
from mpguard import files, jose, keys, unixport
from mpguard.agent import package as agentpkg
from mpguard.attest import store, verify
from mpguard.updates import bundle

BOARDS = 32
TOKENS = 2  # per board (one boot makes them all: the bench needs tokens, not boots)
SIGNERS = 2
RELEASES = 64
RUNS = 7
SECONDS = 1.0


def board_key(b: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0x5EED1000 + b, ec.SECP256R1())


def board_ueid(b: int) -> bytes:
    return bytes([2, 0x24, 0x0A, 0xC4, 0, 1, b])


def attestation_corpus() -> list[tuple[str, str]]:
    """(nonce, token) of BOARDS boards, TOKENS each, signed on the unix port by guard.attest."""
    corpus = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        agent = {f"/lib/{m.source.with_suffix('.mpy')}": m.mpy.read_bytes()
                 for m in agentpkg.compile_agent(tmp / "mpy")}
        img = tmp / "board.img"
        board_bench._image(img, agent, board_key(0))
        for b in range(BOARDS):
            key = board_key(b)
            nonces = [f"fleet-nonce-{b:03d}-{i:04d}" for i in range(TOKENS)]
            res = unixport.run(board_bench._MOUNT + board_bench._TOKEN, {
                "nonces": nonces, "d": key.private_numbers().private_value,
                "pub": keys.public_bytes(key).hex(), "ueid": board_ueid(b).hex(),
                "flash": str(img), "blocks": board_bench.BLOCKS}, path=[], heapsize="64K")
            corpus += list(zip(nonces, res.outputs[:TOKENS], strict=True))
    return corpus


def release_corpus() -> tuple[list[bytes], dict[str, bytes]]:
    """RELEASES manifest tokens by SIGNERS keys, and the anchor set that trusts them."""
    signers = [ec.derive_private_key(0x5E1EA5E0 + i, ec.SECP256R1()) for i in range(SIGNERS)]
    anchors = {keys.thumbprint(k): keys.public_bytes(k) for k in signers}
    tokens = []
    for i in range(RELEASES):
        app = [("main.py", f"print('release {i}')\n".encode()), ("lib/util.py", b"X = 1\n")]
        b = bundle.build(app, signers[i % SIGNERS], app="demo", version=f"1.0.{i}", seq=i + 1,
                         targets=["esp32"])
        tokens.append(bundle.split(b)[0])
    return tokens, anchors


def rates(step: Callable[[], int], runs: int, seconds: float) -> tuple[list[float], list[float]]:
    """(per wall second, per CPU second) of `step` (which returns how many it verified)."""
    step()  # warm: imports, the first parse of each header and key
    wall, cpu = [], []
    for _ in range(runs):
        n = 0
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            n += step()
        wall.append(n / (time.perf_counter() - t0))
        cpu.append(n / max(time.process_time() - c0, 1e-9))
    return wall, cpu


def _fmt(xs: list[float]) -> str:
    return f"min {min(xs):,.0f} median {statistics.median(xs):,.0f}"


def main(runs: int = RUNS) -> dict[str, tuple[list[float], list[float]]]:
    print(f"## host verification at fleet rate (ES256, one process, one core; {runs} runs "
          f"of {SECONDS:.0f} s)")
    corpus = attestation_corpus()
    manifests, anchors = release_corpus()
    inv = board_bench._Inventory()
    for b in range(BOARDS):
        inv.add(board_ueid(b), board_key(b))
    verifier = verify.Verifier(store.Store(inv), window=1e9)
    now = time.time()
    for nonce, tok in corpus:  # every token verifies (and is what the board made)
        assert verifier.verify(tok, nonce, now, now).claims["eat_nonce"] == nonce
    for tok in manifests:
        jose.verify(tok, anchors)

    def attestation() -> int:
        for nonce, tok in corpus:
            verifier.verify(tok, nonce, now, now)
        return len(corpus)

    def release() -> int:
        for tok in manifests:
            jose.verify(tok, anchors)
        return len(manifests)

    raw = []
    for _, tok in corpus:
        h, p, s = tok.split(".")
        sig = files.b64u_dec(s)
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        kid = json.loads(files.b64u_dec(h))["kid"]
        pub = keys.public_from_bytes(next(d["public_key"] for d in inv.devs if d["kid"] == kid))
        raw.append((pub, der, f"{h}.{p}".encode()))
    alg = ec.ECDSA(hashes.SHA256())

    def floor() -> int:
        for pub, der, msg in raw:
            pub.verify(der, msg, alg)
        return len(raw)

    sizes = sorted(len(t) for _, t in corpus)
    print(f"  corpus: {len(corpus)} attestation tokens of {BOARDS} boards ({sizes[0]}.."
          f"{sizes[-1]} B, signed on the unix port), {len(manifests)} release manifests of "
          f"{SIGNERS} release keys")
    out = {}
    for name, step in (("attestation", attestation), ("release", release), ("floor", floor)):
        wall, cpu = rates(step, runs, SECONDS)
        out[name] = (wall, cpu)
        what = {"attestation": "attestation tokens verified/s",
                "release": "release manifests verified/s",
                "floor": "cryptography's ES256 check alone/s"}[name]
        print(f"  {what}: per CPU second {_fmt(cpu)}; per wall second {_fmt(wall)}")
    floor_cpu = statistics.median(out["floor"][1])
    for name in ("attestation", "release"):
        share = statistics.median(out[name][1]) / floor_cpu
        print(f"  {name}: {share:.0%} of the floor (medians per CPU second; aim >= 10,000/s)")
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else RUNS)
