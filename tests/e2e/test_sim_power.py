"""Power cuts at a flash block write (after N, seeded, torn), wear counters, several sims."""

from __future__ import annotations

import subprocess

import pytest

import mpguard.sim as simlib

pytestmark = pytest.mark.timeout(120)

_WRITE = ("with open('/data.bin', 'wb') as f:\n"
          "    for i in range(64):\n"
          "        f.write(bytes([i]) * 1024)\n")


def _write_until_cut(port: str, mpremote_bin: str, name: str) -> dict:
    """Run a writing exec with the real mpremote; the board loses power mid-way."""
    before = simlib.stats(name)["power_cuts"]
    proc = subprocess.Popen([mpremote_bin, "connect", port, "exec", _WRITE],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        st = simlib.wait_for(name, "power_cuts", before + 1, timeout=30)
    finally:
        proc.kill()  # mpremote waits for an answer the dead board will never send
        proc.communicate()
    return st


@pytest.mark.parametrize(
    "kw",
    [
        {"power_cut_after": 3},
        {"power_cut_after": 5, "torn": True},
        {"power_cut_seed": 7, "torn": True},
        {"power_cut_seed": 11},
    ],
    ids=["after-3", "torn-after-5", "seeded-torn", "seeded"],
)
def test_power_cut_then_board_boots_and_mounts(sim_factory, mpr, mpremote_bin, kw):
    port = sim_factory(**kw).port  # armed once the board answers (after formatting blank flash)
    w0 = simlib.stats("t")["writes"]
    st = _write_until_cut(port, mpremote_bin, "t")
    assert st["power_cuts"] == 1
    cut = st["last_cut"]
    n, pm = simlib.cut_plan(kw.get("power_cut_after"), kw.get("power_cut_seed"), kw.get("torn", False))
    assert st["writes"] == w0 + n  # the N-th block write since power-on was the last
    if pm < 1000:
        assert 0 <= cut["bytes_written"] < 4096
    # the board came back by itself (power on), mounted the same image without reformatting
    out = mpr(port, "exec", "import os, machine\nprint(machine.reset_cause(), 'lib' in os.listdir('/') or True)")
    assert out.stdout.split() == ["1", "True"]
    st = simlib.stats("t")
    assert st["formats"] == 1  # only the very first boot on blank flash
    assert st["power_cuts"] == 1  # one cut per arming
    # the filesystem is usable; the interrupted file is absent or a prefix of what was written
    out = mpr(port, "exec", "import os\nwith open('/new.txt', 'w') as f:\n    f.write('new')\n"
              "print(open('/new.txt').read())\n"
              "d = open('/data.bin', 'rb').read() if 'data.bin' in os.listdir('/') else b''\n"
              "print(all(d[i] == i // 1024 for i in range(len(d))))").stdout.split()
    assert out == ["new", "True"]


def test_power_cut_armed_on_running_sim_and_wear_counts(sim_factory, mpr, mpremote_bin):
    port = sim_factory().port
    st0 = simlib.stats("t")
    mpr(port, "exec", "with open('/a.bin', 'wb') as f:\n    f.write(bytes(10000))")
    st1 = simlib.stats("t")
    assert st1["writes"] > st0["writes"] and st1["erases"] > st0["erases"]
    assert sum(st1["block_writes"].values()) == st1["writes"]
    n, pm = simlib.arm_power_cut("t", after=2, torn=True)
    assert (n, pm) == (2, 500)
    st = _write_until_cut(port, mpremote_bin, "t")
    assert st["last_cut"]["bytes_written"] < 4096
    assert mpr(port, "eval", "len(open('/a.bin', 'rb').read())").stdout.strip() == "10000"


def test_bad_power_cut_requests(sim_factory):
    with pytest.raises(simlib.SimError, match="at least 1"):
        sim_factory(power_cut_after=0)
    with pytest.raises(simlib.SimError, match="--torn needs"):
        sim_factory(torn=True)
    assert not any(s.running for s in simlib.list_sims())


def test_several_sims_at_once_each_with_its_own_flash(sim_factory, mpr):
    ports = [sim_factory(f"line{i}").port for i in range(3)]
    assert len(set(ports)) == 3
    for i, port in enumerate(ports):
        mpr(port, "exec", f"with open('/who', 'w') as f:\n    f.write('board{i}')")
    for i, port in enumerate(ports):
        assert mpr(port, "fs", "cat", ":who").stdout == f"board{i}"
    uids = {mpr(p, "eval", "__import__('machine').unique_id()").stdout for p in ports}
    assert len(uids) == 3
    infos = {s.name: s for s in simlib.list_sims()}
    assert {infos[f"line{i}"].image for i in range(3)} == {str(infos[f"line{i}"].state_dir) + "/flash.img" for i in range(3)}


def test_armed_cut_is_counted_from_the_arming_across_soft_resets(sim_factory, mpr, mpremote_bin):
    """N counts block writes from the arming, over soft resets (each mpremote command is
    one): the firmware reports which write it chose and the next boot keeps it."""
    port = sim_factory().port
    small = "with open('/s.txt', 'w') as f:\n    f.write('s' * 100)"
    w = simlib.stats("t")["writes"]
    mpr(port, "exec", small)
    per_small = simlib.stats("t")["writes"] - w
    assert per_small >= 1
    w0 = simlib.stats("t")["writes"]
    n = per_small + 4
    simlib.arm_power_cut("t", after=n)
    mpr(port, "exec", small)  # fewer writes than n, then a soft reset
    st = simlib.stats("t")
    assert st["power_cuts"] == 0 and st["writes"] - w0 < n
    st = _write_until_cut(port, mpremote_bin, "t")
    assert st["writes"] == w0 + n


_WRITE_FOREVER = "while True:\n    with open('/w.bin', 'wb') as f:\n        f.write(bytes(6000))\n"


def test_cut_armed_while_the_board_writes_still_happens(sim_factory, mpremote_bin):
    """Arming races with writes the host has not been told of yet: the cut is counted by the
    firmware from the first write that sees it, so it cannot fall behind and never come."""
    port = sim_factory().port
    for i in range(1, 4):  # one cut per arming, each at the next block write
        writer = subprocess.Popen([mpremote_bin, "connect", port, "exec", _WRITE_FOREVER],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            simlib.wait_for("t", "writes", simlib.stats("t")["writes"] + 20, timeout=30)
            simlib.arm_power_cut("t", after=1, torn=True)
            assert simlib.wait_for("t", "power_cuts", i, timeout=30)["power_cuts"] == i
        finally:
            writer.kill()  # mpremote waits for an answer the dead board will never send
            writer.communicate()
