"""Host verification at fleet rate: ES256 verifications per second, one process, one core.

Corpus: BOARDS boards' attestation tokens made by the board code itself (guard.attest.token,
the compiled agent on the MicroPython unix port, TOKENS nonces each, one key and UEID per
board), and RELEASES release manifests made by the host signer (mpguard.updates.bundle.build)
with SIGNERS release keys. Then, in this one single-threaded process, RUNS rounds, each one
run of SECONDS of every step below in turn (interleaved: on a shared machine a round's steps
see the same load, so their ratios hold even when the load moves between rounds):

  attestation  mpguard.attest.verify.Verifier.verify over every token (the JWS checks, the
               signature with the board's key from the inventory, RFC 9711 claim types, UEID,
               nonce, freshness), the boards in an in-memory inventory
  release      mpguard.jose.verify of every manifest against the anchor set as a project
               holds it (kid -> 65-byte point)
  floor        cryptography's own ECPublicKey.verify on the same signatures and signing inputs
               (DER made beforehand, keys parsed beforehand), one floor per corpus (a token's
               signing input is ~2.9 KB to hash, a manifest's ~0.5 KB): OpenSSL's ES256
               check through `cryptography` on this machine, the most either can do

Each figure is given per CPU second of this process (the `process_time` clock: on a shared
machine it counts only the time this process ran, so it is what one core does) and per
wall-clock second, as min and median over the rounds; then each path's share of its floor
and mpguard's own cost per token (1/rate - 1/floor, from the medians per CPU second); then
each call at its quietest (QUIET_PASSES passes; the median over the corpus of each call's
fastest time): on a shared machine the rates move with the neighbours' load, the quietest
times hardly, so they are what compares one version of the code with another.
`python -m bench.host_verify [RUNS]`.
"""

from __future__ import annotations

import functools
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
QUIET_PASSES = 50


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


def rates(steps: dict[str, Callable[[], int]], runs: int,
          seconds: float) -> dict[str, tuple[list[float], list[float]]]:
    """name -> (per wall second, per CPU second) of each step (which returns how many it
    verified), `runs` rounds of one run of each step in turn."""
    for step in steps.values():
        step()  # warm: imports, the first parse of each header and key
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in steps}
    for _ in range(runs):
        for name, step in steps.items():
            n = 0
            t0, c0 = time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < seconds:
                n += step()
            out[name][0].append(n / (time.perf_counter() - t0))
            out[name][1].append(n / max(time.process_time() - c0, 1e-9))
    return out


def quietest(calls: dict[str, list[Callable[[], object]]], passes: int) -> dict[str, float]:
    """name -> the median over its calls of each call's fastest time in `passes` passes, in
    us: what the code costs when no neighbour on the machine slows it down (a shared machine's
    load lengthens some calls, never shortens one). A pass runs each name's calls in a row
    (warm, as in the rounds above) and the names take turns pass by pass."""
    best = {name: [float("inf")] * len(fs) for name, fs in calls.items()}
    for _ in range(passes):
        for name, fs in calls.items():
            b = best[name]
            for i, f in enumerate(fs):
                t0 = time.perf_counter_ns()
                f()
                t = (time.perf_counter_ns() - t0) / 1000
                if t < b[i]:
                    b[i] = t
    return {name: statistics.median(b) for name, b in best.items()}


def _fmt(xs: list[float]) -> str:
    return f"min {min(xs):,.0f} median {statistics.median(xs):,.0f}"


ALG = ec.ECDSA(hashes.SHA256())


def _floor(tokens: list[str], key_of: Callable[[str], ec.EllipticCurvePublicKey]
           ) -> list[tuple[ec.EllipticCurvePublicKey, bytes, bytes]]:
    """What cryptography's check alone needs for `tokens`: (key, DER, signing input), made
    beforehand."""
    raw = []
    for tok in tokens:
        h, p, s = tok.split(".")
        sig = files.b64u_dec(s)
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        raw.append((key_of(json.loads(files.b64u_dec(h))["kid"]), der, f"{h}.{p}".encode()))
    return raw


AIM = 10_000
WHAT = {"attestation": "attestation tokens verified/s (RFC 9711 claim checks included)",
        "release": "release manifests verified/s",
        "floor_attestation": "cryptography's ES256 check alone/s, on the tokens",
        "floor_release": "cryptography's ES256 check alone/s, on the manifests"}


def main(runs: int = RUNS) -> dict[str, tuple[list[float], list[float]]]:
    print(f"## host verification at fleet rate (ES256, one process, one core; {runs} rounds "
          f"of {SECONDS:.0f} s per step, interleaved)")
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

    boards = {d["kid"]: d["public_key"] for d in inv.devs}
    floors = {
        "floor_attestation": _floor([t for _, t in corpus],
                                    lambda kid: keys.public_from_bytes(boards[kid])),
        "floor_release": _floor([t.decode() for t in manifests],
                                lambda kid: keys.public_from_bytes(anchors[kid])),
    }

    def floor(raw: list[tuple[ec.EllipticCurvePublicKey, bytes, bytes]]) -> Callable[[], int]:
        def step() -> int:
            for pub, der, msg in raw:
                pub.verify(der, msg, ALG)
            return len(raw)
        return step

    steps = {"attestation": attestation, "release": release,
             **{name: floor(raw) for name, raw in floors.items()}}
    sizes = sorted(len(t) for _, t in corpus)
    msizes = sorted(len(t) for t in manifests)
    print(f"  corpus: {len(corpus)} attestation tokens of {BOARDS} boards ({sizes[0]}.."
          f"{sizes[-1]} B, signed on the unix port), {len(manifests)} release manifests of "
          f"{SIGNERS} release keys ({msizes[0]}..{msizes[-1]} B)")
    out = rates(steps, runs, SECONDS)
    for name, (wall, cpu) in out.items():
        print(f"  {WHAT[name]}: per CPU second {_fmt(cpu)}; per wall second {_fmt(wall)}")
    q = quietest({
        "attestation": [functools.partial(verifier.verify, tok, nonce, now, now)
                        for nonce, tok in corpus],
        "release": [functools.partial(jose.verify, tok, anchors) for tok in manifests],
        **{name: [functools.partial(pub.verify, der, msg, ALG) for pub, der, msg in raw]
           for name, raw in floors.items()}}, QUIET_PASSES)
    for name in ("attestation", "release"):
        rate = statistics.median(out[name][1])
        floor = statistics.median(out["floor_" + name][1])
        own = 1e6 / rate - 1e6 / floor
        print(f"  {name}: {rate / floor:.0%} of its floor, mpguard's own cost {own:.1f} us per "
              f"token beside {1e6 / floor:.1f} us of signature check (medians per CPU second); "
              f"aim >= {AIM:,}/s {'met' if min(out[name][1]) >= AIM else 'not met'} by the min "
              f"(the floor itself: {_fmt(out['floor_' + name][1])})")
        qf = q["floor_" + name]
        print(f"  {name}, each call at its quietest ({QUIET_PASSES} passes, median over the "
              f"corpus of each call's fastest): {q[name]:.1f} us, {qf:.1f} us of it the "
              f"signature check: mpguard's own {q[name] - qf:.1f} us, {qf / q[name]:.0%} of "
              f"the floor; {1e6 / q[name]:,.0f}/s")
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else RUNS)
