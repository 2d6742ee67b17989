"""A board whose filesystem is FAT (a virtual one: `mpguard sim start --fs fat`): `agent install`
refuses it before it writes anything, `--force` or not (the agent's state files are renamed
over the old ones, atomic on littlefs only: docs/decisions/0030-fat-root-refused.md); the
board itself works for mpremote's file operations; a board that cannot say what its
filesystem is (an older MicroPython) is let through."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mpguard.sim as simlib
from mpguard import project
from mpguard.agent import install as agent_install
from mpguard.link import BoardLink

pytestmark = pytest.mark.timeout(300)
BIN = Path(sys.executable).parent

# Every file on the board with its SHA-256, run by the real mpremote (no agent needed).
LISTING = ("import os,hashlib,binascii\n"
           "def w(d):\n for e in os.ilistdir(d):\n  p=d.rstrip('/')+'/'+e[0]\n"
           "  if e[1]==0x4000: print(p+'/'); w(p)\n  else: print(p, binascii.hexlify("
           "hashlib.sha256(open(p,'rb').read()).digest()).decode())\nw('/')")

# What an older MicroPython does, emulated in the REPL session (until its next soft reset):
# no `vfs` module at all, or a vfs.mount() that needs its arguments (no listing form).
CANNOT_SAY = {
    "no-vfs-module": "import builtins\n_i = builtins.__import__\n"
                     "def _imp(name, *a):\n if name == 'vfs': raise ImportError(name)\n"
                     " return _i(name, *a)\nbuiltins.__import__ = _imp",
    "mount-needs-arguments": "import sys\nclass _V:\n @staticmethod\n def mount(fs, path): pass\n"
                             "sys.modules['vfs'] = _V",
}


def mpguard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "mpguard"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def mpremote(port: str, *args: str) -> str:
    r = subprocess.run([str(BIN / "mpremote"), "connect", port, *args], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def board_files(port: str) -> list[str]:
    return sorted(mpremote(port, "exec", LISTING).split("\n"))


def test_agent_install_refuses_a_fat_board_and_writes_nothing(sim_dir, tmp_path):
    r = mpguard("sim", "start", "--name", "fat", "--fs", "fat", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "fs fat" in r.stdout
    port = r.stdout.strip().splitlines()[-1]
    assert simlib.get("fat").fs == "fat"
    # a working board: mpremote's own file operations on its FAT filesystem
    app = tmp_path / "main.py"
    app.write_text("print('mine')\n")
    mpremote(port, "fs", "mkdir", ":lib", "+", "fs", "cp", str(app), ":main.py",
             "+", "fs", "cp", str(app), ":lib/x.py")
    assert mpremote(port, "fs", "cat", ":main.py") == "print('mine')\n"
    assert "VfsFat" in mpremote(port, "exec", "import vfs\nprint(vfs.mount())")
    before = board_files(port)
    assert "/main.py" in " ".join(before) and "/lib/x.py" in " ".join(before)
    assert mpguard("init", "proj", "--target", "sim", "--no-passphrase", cwd=tmp_path).returncode == 0

    for extra in ([], ["--force"]):  # --force does not override it
        r = mpguard("agent", "install", "--port", "sim:fat", *extra, cwd=tmp_path / "proj")
        assert r.returncode == 2, (extra, r.stdout, r.stderr)
        assert r.stderr.startswith("mpguard: the board's filesystem is FAT (VfsFat)"), r.stderr
        assert "nothing was written" in r.stderr and "Traceback" not in r.stderr
        assert "hint: reformat it as littlefs" in r.stderr
        assert "vfs.VfsLfs2.mkfs(flashbdev.bdev)" in r.stderr
        assert board_files(port) == before
    r = mpguard("agent", "install", "--port", "sim:fat", "--json", cwd=tmp_path / "proj")
    err = json.loads(r.stdout)
    assert (r.returncode, err["exit_code"], err["error"]["type"]) == (2, 2, "RootFsRefused")
    assert "docs/agent-install.md" in err["error"]["hint"]
    assert board_files(port) == before
    # and the board still takes mpremote's writes and removals
    mpremote(port, "fs", "rm", ":lib/x.py", "+", "fs", "cp", str(app), ":y.py")
    after = board_files(port)
    assert "/y.py" in " ".join(after) and "/lib/x.py" not in " ".join(after)


def test_root_fs_names_the_filesystem(sim_factory):
    lfs = sim_factory("lfs")
    fat = sim_factory("fatfs", fs="fat")
    with BoardLink(lfs.port) as link:
        assert link.root_fs() == "VfsLfs2"
    with BoardLink(fat.port) as link:
        assert link.root_fs() == "VfsFat"


@pytest.mark.parametrize("older", sorted(CANNOT_SAY))
def test_a_board_that_cannot_say_is_let_through(sim_factory, tmp_path, older):
    """root_fs is None on a MicroPython without the `vfs` module or without vfs.mount()'s
    listing form, and the install goes on (here on a FAT board, which it would refuse)."""
    info = sim_factory("old", fs="fat")
    proj = project.init(tmp_path / "proj", passphrase=None, targets=["sim"])
    with BoardLink(info.port) as link:
        link.exec(CANNOT_SAY[older])
        assert link.root_fs() is None
        assert link.exec("print(len(__import__('os').listdir('/')))").strip() == "0"
        if older != "no-vfs-module":
            return  # one install is enough to show that None goes on
        rep = agent_install.install(link, proj.board_anchors())
        assert "/main.py" in rep.written and rep.board_kind == "sim"
        # the install's soft resets ended the emulation: the board says FAT again
        assert link.root_fs() == "VfsFat"
