"""An install never fails with an exception, and never needs heap that grows with the app
installed before it (issue #14, finding 1).

A MemoryError (or any error) anywhere in an install is a refusal with a reason, the board's
files and state as they were (the slot being written removed again); a host breaking off
(KeyboardInterrupt) still propagates, after the same clean-up. A genuine release at the
limits (32 files, the manifest at 4 KiB) followed by any genuine release installs in 64K.
"""

from __future__ import annotations

import pytest
from agentboard import app, max_release, min_heap_sequence, modules_after_install

BOOM = """
class Boom:
    # the bundle's stream, raising `exc` once `after` bytes have been read
    def __init__(self, s, after, exc):
        self.s, self.after, self.exc, self.n = s, after, exc, 0
    def readinto(self, b):
        if self.n >= self.after:
            raise self.exc
        k = self.s.readinto(memoryview(b)[:max(1, min(len(b), self.after - self.n))])
        self.n += k
        return k

def offer(i, after, exc):
    s = STREAMS[i]
    s.seek(0, 2)
    n = s.tell()
    s.seek(0)
    return I.install(Boom(s, after, exc), n)

keep = lambda: [snap('/app/a'), snap('/mpguard')]
"""


def _prepare(fboard, signer):
    assert fboard.out("OUT(install(0))", [signer.bundle(app("1.0"), seq=1)])["status"] == "installed"
    assert "CONFIRMED True" in fboard.run("boot()").stdout


@pytest.mark.parametrize("exc, reason", [("MemoryError()", "no_memory"),
                                         ("TypeError('x')", "internal"),
                                         ("OSError(28)", "io_error")])
@pytest.mark.parametrize("where", ["in the manifest", "mid-stream"])
def test_an_error_anywhere_is_a_clean_refusal(fboard, signer, exc, reason, where):
    _prepare(fboard, signer)
    b2 = signer.bundle(app("2.0", extra=5000), seq=2)
    after = 100 if where == "in the manifest" else len(b2) - 2000
    code = BOOM + (f"before = keep()\nr = offer(0, {after}, {exc})\n"
                   "OUT([r, keep() == before, app_files('b'), S.status()])")
    r, kept, slot_b, st = fboard.out(code, [b2])
    assert r["status"] == "refused" and r["reason"] == reason, r
    if reason == "internal":
        assert r["detail"] == "TypeError"
    assert kept and slot_b is None  # the running app and the state as they were
    assert st["seq"] == 1 and st["hi"] == 1 and st["trial"] is None and st["refused"] == r
    assert fboard.out("OUT(install(0))", [b2])["status"] == "installed"


def test_a_host_breaking_off_propagates_after_the_clean_up(fboard, signer):
    _prepare(fboard, signer)
    b2 = signer.bundle(app("2.0", extra=5000), seq=2)
    code = BOOM + ("before = keep()\ntry:\n    offer(0, len_b - 2000, KeyboardInterrupt())\n"
                   "except KeyboardInterrupt:\n    OUT([keep() == before, app_files('b')])")
    assert fboard.out(code.replace("len_b", str(len(b2))), [b2]) == [True, None]


def test_max_release_then_a_small_one_installs_in_64k(agent_mpy, tmp_path, signer):
    """Finding 1: 32 files, the manifest at its 4 KiB limit, confirmed; then a small
    release. Each step in its own boot, as on a board, all the agent's modules loaded."""
    big, small = max_release(signer, seq=1), signer.bundle(app("2.0"), seq=2)
    need, idle = min_heap_sequence(agent_mpy, tmp_path, signer.anchor_json, [big, small])
    print(f"\nheap: a {len(big)} B release of 32 files, then a small one: {need} B "
          f"({need - idle} B above the loaded agent)")
    assert need <= 64 * 1024
    # nothing of the installed app is held (its 4 KiB manifest alone would show): the small
    # release after the big one needs what it needs on an empty board, within the jitter of
    # a conservative GC's heap search (up to 1,536 B seen, in a clean clone's run)
    alone, _ = min_heap_sequence(agent_mpy, tmp_path, signer.anchor_json, [small])
    assert need - alone <= 2048, (need, alone)


def test_max_release_then_a_small_one_fits_the_smallest_board_profile(agent_mpy, tmp_path,
                                                                        signer):
    """The same, as on a board whose agent was installed as .mpy files on its flash (`mpguard
    agent install`): modules load from flash when a step needs them and go again after it,
    guard.rpc and guard.xfer loaded as in a deploy. The heap the install needs above the
    idle board must fit the smallest profile's heap (what a board gives code at its REPL).
    The unix port is 64-bit: an ESP32 (32-bit) needs less than this."""
    from mpguard import boards

    smallest = min((boards.load_profile(k)["heap_bytes"], k) for k in boards.profile_kinds())
    big, small = max_release(signer, seq=1), signer.bundle(app("2.0"), seq=2)
    need, idle = min_heap_sequence(agent_mpy, tmp_path, signer.anchor_json, [big, small],
                                   lazy=True)
    print(f"\nheap above the idle board: {need - idle} B; smallest profile {smallest[1]}: "
          f"{smallest[0]} B, headroom {smallest[0] - (need - idle)} B")
    assert need - idle <= smallest[0]


def test_an_install_unloads_what_it_loaded(agent_mpy, tmp_path, signer):
    # the crypto modules, the field rules, the board's hardware module and the slot writer go
    # again; what stays is the install's entry point, the state module it saved with, and
    # what the deploy had loaded before (rpc, xfer). Each step's modules go when it is done:
    # the crypto modules are gone before guard.hw parses the board profile (on the smallest
    # profile the two together cost about 3 KiB more than the signature check alone).
    mods, at_clock = modules_after_install(agent_mpy, tmp_path, signer.anchor_json,
                                           signer.bundle(app("1.0"), seq=1))
    assert mods == ["guard", "guard.install", "guard.rpc", "guard.slots", "guard.state",
                    "guard.xfer"], mods
    assert at_clock == ["guard", "guard.hw", "guard.install", "guard.rpc", "guard.xfer"], at_clock


def test_a_state_write_that_fails_half_way_leaves_the_state_as_it_was(fboard, signer):
    # The state file is written beside it and renamed over it: an error in the middle of the
    # write (no room left, a MemoryError) leaves the old state whole, never a torn file that
    # would make the board refuse every later update (bad_state). The install is refused.
    _prepare(fboard, signer)
    before = fboard.out("OUT(open('/mpguard/state.json').read())")
    code = """
import json
class HalfWay:
    # json as guard.state uses it, failing half way through the state file (no room left)
    def load(self, f):
        return json.load(f)
    def dump(self, obj, f):
        s = json.dumps(obj)
        f.write(s[: len(s) // 2])
        raise OSError(28)
S.json = HalfWay()
OUT(install(0))
"""
    r = fboard.out(code, [signer.bundle(app("2.0"), seq=2)])
    assert r == {"status": "refused", "reason": "io_error"}
    assert fboard.out("OUT(open('/mpguard/state.json').read())") == before
    res = fboard.run("OUT(boot())\nOUT(install(0))", [signer.bundle(app("2.0"), seq=2)])
    assert "APP demo 1.0" in res.stdout and res.outputs[1]["status"] == "installed"
