"""The virtual board boots its firmware compiled to .mpy, kept in a cache that every sim shares
(host_tools/mpguard/sim/fwcache.py, decisions/0024): made once per version of the firmware's
sources, safely by supervisors that race, and never at the cost of a boot (without mpy-cross,
or where the cache cannot be written, the board boots from source)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

import mpguard.sim as simlib
from mpguard.sim import folder, fwcache
from mpguard.unixport import micropython_path

pytestmark = pytest.mark.timeout(120)

# Where each of the firmware's modules comes from, and the traceback of user code that went
# through the firmware (_simfw's print and open) or a peripheral.
PROBE = (
    "import sys, _simhw\n"
    "print('FW', _simhw._cfg['fwdir'])\n"
    "for k in sorted(sys.modules):\n"
    "    if k.startswith('_sim'):\n"
    "        print('MOD', k, sys.modules[k].__file__)\n"
)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private cache folder (XDG_CACHE_HOME) for the sims of this test."""
    base = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(base))
    return base / "mpguard" / fwcache.SUBDIR


def _probe(mpr, port: str) -> tuple[str, dict[str, str]]:
    out = mpr(port, "exec", PROBE).stdout.split("\n")
    fw = next(ln.split(" ", 1)[1].strip() for ln in out if ln.startswith("FW "))
    mods = dict(ln.strip().split(" ")[1:] for ln in out if ln.startswith("MOD "))
    return fw, mods


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.iterdir()) if cache.is_dir() else []


def test_boots_run_the_compiled_firmware_of_one_shared_entry(sim_factory, cache, mpr):
    port = sim_factory("a").port
    [entry] = _entries(cache)
    assert sorted(p.name for p in entry.glob("*.py")) == [fwcache.ENTRY]  # .py would shadow .mpy
    assert {p.stem for p in entry.glob("*.mpy")} == {
        p.stem for p in folder.firmware_dir().glob("_sim*.py")}
    fw, mods = _probe(mpr, port)
    assert fw == str(entry)
    assert "_simfw" in mods and "_simrepl" in mods
    for name, file in mods.items():
        assert file.endswith(".mpy"), (name, file)
    mtimes = {p: p.stat().st_mtime_ns for p in entry.iterdir()}
    # a second sim, and a restart: the same entry, not compiled again
    port_b = sim_factory("b").port
    assert _probe(mpr, port_b)[0] == str(entry)
    simlib.stop("a")
    sim_factory("a")
    assert _entries(cache) == [entry]
    assert {p: p.stat().st_mtime_ns for p in entry.iterdir()} == mtimes


def test_tracebacks_still_hide_the_firmware(sim_factory, cache, mpr):
    port = sim_factory().port
    out = mpr(port, "exec", "print(1, file=3)", check=False)
    text = out.stdout + out.stderr
    assert 'File "<stdin>", line 1, in <module>\nOSError: stream operation not supported' in text
    assert "sim-firmware" not in text and "_simfw" not in text  # _cprint's frame is hidden
    out = mpr(port, "exec", "import machine\nmachine.Pin(999)", check=False)
    text = out.stdout + out.stderr
    # a peripheral's frames name the folder they are imported from, as from source
    assert 'File "/_simfw_/_simpin.py", line ' in text and "ValueError: invalid pin" in text
    assert "sim-firmware" not in text


def test_an_unwritable_cache_boots_from_source(sim_factory, tmp_path, monkeypatch, mpr):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    info = sim_factory()
    fw, mods = _probe(mpr, info.port)
    assert fw == str(folder.firmware_dir())
    assert mods["_simfw"] == str(folder.firmware_dir() / "_simfw.py")
    assert "booting the firmware from source" in (Path(info.state_dir) / folder.LOG_FILE).read_text()


def test_without_mpy_cross_the_board_boots_from_source(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(fwcache, "mpy_cross", lambda: None)
    assert fwcache.boot_dir(micropython_path()) == folder.firmware_dir()
    assert not (tmp_path / "mpguard" / fwcache.SUBDIR).exists() or not _entries(
        tmp_path / "mpguard" / fwcache.SUBDIR)


def test_a_cache_folder_others_can_write_is_not_used(tmp_path):
    # what the board boots runs as this user: a folder another user can write to is refused
    # (boot_dir then boots the sources), and nothing is compiled into it
    root = tmp_path / "everyones"
    root.mkdir()
    root.chmod(0o777)
    with pytest.raises(OSError, match="not this user's alone"):
        fwcache.compiled(micropython_path(), root=root)
    assert list(root.iterdir()) == []
    root.chmod(0o700)
    assert fwcache.compiled(micropython_path(), root=root).parent == root.resolve()


def test_a_failing_mpy_cross_leaves_no_entry(tmp_path):
    bad = tmp_path / "mpy-cross"
    bad.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'MicroPython v0 bad' && exit 0\nexit 1\n")
    bad.chmod(0o755)
    root = tmp_path / "cache"
    with pytest.raises(OSError, match="mpy-cross failed"):
        fwcache.compiled(micropython_path(), root=root, exe=str(bad))
    assert list(root.iterdir()) == []  # nor a temporary folder


def test_changed_sources_get_a_new_entry(tmp_path):
    src = tmp_path / "fw"
    shutil.copytree(folder.firmware_dir(), src)
    root = tmp_path / "cache"
    first = fwcache.compiled(micropython_path(), src=src, root=root)
    assert fwcache.compiled(micropython_path(), src=src, root=root) == first
    with (src / "_simrtc.py").open("a") as f:
        f.write("CHANGED = 1\n")
    second = fwcache.compiled(micropython_path(), src=src, root=root)
    assert second != first
    assert sorted(root.iterdir()) == sorted([first, second])
    assert (second / "_simrtc.mpy").read_bytes() != (first / "_simrtc.mpy").read_bytes()


def test_supervisors_that_race_share_one_entry(tmp_path):
    root = tmp_path / "cache"
    got: list[Path | BaseException] = []
    barrier = threading.Barrier(4)

    def one() -> None:
        barrier.wait()
        try:
            got.append(fwcache.compiled(micropython_path(), root=root))
        except BaseException as e:  # noqa: BLE001  (reported below)
            got.append(e)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and isinstance(got[0], Path), got
    assert os.listdir(root) == [got[0].name]  # no temporary folder left


def test_a_cache_cleared_under_a_running_sim(sim_factory, cache, mpr):
    port = sim_factory().port
    [entry] = _entries(cache)
    shutil.rmtree(cache)  # `rm -rf` of the cache while the sim runs: its next boot compiles again
    fw, mods = _probe(mpr, port)  # mpremote's soft reset is a boot
    assert fw == str(entry) and mods["_simfw"].endswith(".mpy")


def test_a_new_entry_prunes_what_went_unused_for_a_month(tmp_path):
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    old, recent = root / ("0" * 64), root / ("1" * 64)  # entries of earlier firmware
    stale_tmp, fresh_tmp = root / ".tmp-crashed", root / ".tmp-building"
    for p in (old, recent, stale_tmp, fresh_tmp):
        p.mkdir()
        (p / fwcache.ENTRY).write_text("")
    now = time.time()
    os.utime(old, (now - 31 * 86400,) * 2)
    os.utime(recent, (now - 29 * 86400,) * 2)
    os.utime(stale_tmp, (now - 2 * 86400,) * 2)
    entry = fwcache.compiled(micropython_path(), root=root)
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [entry.name, recent.name, fresh_tmp.name])
    # an entry that is there already prunes nothing
    os.utime(recent, (now - 40 * 86400,) * 2)
    assert fwcache.compiled(micropython_path(), root=root) == entry and recent.is_dir()


def test_a_supervisor_starting_on_an_entry_keeps_it_fresh(tmp_path, cache):
    entry = fwcache.boot_dir(micropython_path())
    assert entry.parent == cache.resolve()
    os.utime(entry, (time.time() - 40 * 86400,) * 2)
    assert fwcache.boot_dir(micropython_path()) == entry
    assert time.time() - entry.stat().st_mtime < 3600
