"""Heap of an install on MicroPython: fits 64K, and its peak does not grow with the bundle.

The heap an operation needs is measured as the smallest `-X heapsize` (bisected, 256-byte
steps) under which a bare board script (flash block device, agent imported, anchors in
place) completes it. Allocation in MicroPython is deterministic, so these figures are too;
no clock is involved. bench/update.py prints the same figures for 64 KiB and 1 MiB bundles.
"""

from __future__ import annotations

from agentboard import app, min_heap

BUDGET = 24 * 1024  # docs/architecture.md 7: agent heap peak for any operation


def test_install_heap_fits_64k_and_is_independent_of_bundle_size(agent_mpy, tmp_path, signer):
    idle = min_heap(agent_mpy, tmp_path, None, signer.anchor_json)
    sizes = {}
    for extra in (16 * 1024, 256 * 1024):
        b = tmp_path / f"b{extra}"
        b.write_bytes(signer.bundle(app("1.0", extra=extra), seq=1))
        sizes[extra] = min_heap(agent_mpy, tmp_path, b, signer.anchor_json, blocks=128)
    print(f"\nheap: agent idle {idle} B; install of 16 KiB {sizes[16 * 1024]} B, "
          f"of 256 KiB {sizes[256 * 1024]} B")
    for need in sizes.values():
        assert need <= 64 * 1024  # every operation runs under -X heapsize=64K
        assert need - idle <= BUDGET
    # 16x the payload (240 KiB more), the same heap: within 1 KiB, the jitter of where the
    # allocator's fragments fall (littlefs's own block buffers come and go with the files)
    assert abs(sizes[256 * 1024] - sizes[16 * 1024]) <= 1024


def test_install_with_the_anchors_comb_table_stays_in_budget(agent_mpy, tmp_path, signer):
    # the anchor's table (1 KiB, read and hashed by guard.jws) instead of Q's odd multiples.
    # Each compared with the bare board's own need under the same anchors (writing the table
    # file beside them takes heap of its own in the set-up)
    b = tmp_path / "b16k"
    b.write_bytes(signer.bundle(app("1.0", extra=16 * 1024), seq=1))
    idle = min_heap(agent_mpy, tmp_path, None, signer.anchor_json)
    plain = min_heap(agent_mpy, tmp_path, b, signer.anchor_json)
    idle_tab = min_heap(agent_mpy, tmp_path, None, signer.anchor_tab_json, tabs=signer.tabs)
    tab = min_heap(agent_mpy, tmp_path, b, signer.anchor_tab_json, tabs=signer.tabs)
    print(f"\nheap: install of 16 KiB, anchors without tables {plain} B (idle {idle} B), "
          f"with {tab} B (idle {idle_tab} B)")
    assert tab <= 64 * 1024 and tab - idle_tab <= BUDGET
    assert tab - idle_tab <= plain - idle + 1024  # at most the table's own size more


def test_largest_manifest_installs_in_64k(agent_mpy, tmp_path, signer):
    # As many files as fit the 4 KiB manifest limit: the largest allocation of an install
    from mpguard.errors import BundleError

    files = [("main.py", b"print(1)\n")]
    data = signer.bundle(files, seq=1)
    for i in range(40):
        try:
            bigger = signer.bundle(files + [(f"lib/m{i:02d}.py", b"x = %d\n" % i)], seq=1)
        except BundleError as e:
            assert e.reason in ("too_large", "too_many_files")
            break
        files.append((f"lib/m{i:02d}.py", b"x = %d\n" % i))
        data = bigger
    b = tmp_path / "wide"
    b.write_bytes(data)
    need = min_heap(agent_mpy, tmp_path, b, signer.anchor_json)
    print(f"\nheap: install of a {len(files)}-file bundle ({len(data)} B, the manifest at its "
          f"limit): {need} B")
    assert len(data) > 3800
    assert need <= 64 * 1024
