"""The README and docs/ stand alone: every relative link resolves inside the repository, and
nothing in the repository points at files outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)#\s]+)(?:#[^)]*)?\)")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_relative_links_resolve():
    broken = []
    for md in markdown_files():
        for target in LINK.findall(md.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (md.parent / target).resolve()
            if not path.exists():
                broken.append(f"{md.relative_to(ROOT)} -> {target}")
            elif ROOT not in path.parents and path != ROOT:
                broken.append(f"{md.relative_to(ROOT)} -> {target} (outside the repository)")
    assert broken == []


def test_nothing_refers_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if files.returncode != 0:  # not a git checkout: every file under the root
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()
                 and ".venv" not in p.parts and ".git" not in p.parts]
    else:
        names = files.stdout.split()
    # the design notes outside the repository, and this machine's paths (built from parts so
    # that this line does not name them itself)
    pattern = re.compile(r"\.\./" + "shared|/" + r"work/|DESIGN\.md")
    me = Path(__file__).relative_to(ROOT).as_posix()
    bad = []
    for name in names:
        p = ROOT / name
        if name == me or not p.is_file() or p.suffix in (".json", ".img", ".bin"):
            continue
        try:
            text = p.read_text()
        except UnicodeDecodeError:
            continue
        bad += [f"{name}: {m.group(0)}" for m in pattern.finditer(text)]
    assert bad == []
