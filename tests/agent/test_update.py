"""The update path on MicroPython over littlefs2: guard.install (install), guard.boot (trial
boot, confirm, rollback) and guard.state (status, configure)."""

from __future__ import annotations

from agentboard import app, manifest_hashes

STATUS = "OUT(S.status())"


def test_install_boot_confirm(fboard, signer):
    v1 = app("1.0")
    b1 = signer.bundle(v1, seq=1)
    r = fboard.out("OUT(install(0))", [b1])
    assert r == {"status": "installed", "reason": None, "slot": "a", "seq": 1}
    # Installed on trial: nothing confirmed yet, the sequence has not advanced.
    st = fboard.out(STATUS)
    assert st["active"] is None and st["seq"] == 0
    assert st["trial"]["slot"] == "a" and st["trial"]["seq"] == 1 and st["trial"]["boots"] == 0
    assert st["last"]["result"] == "installed"
    assert fboard.out("OUT(app_files('a'))") == manifest_hashes(v1)
    # First boot: the trial app runs and confirms itself.
    res = fboard.run("OUT(boot())\nOUT(S.status())")
    assert "APP demo 1.0" in res.stdout and "CONFIRMED True" in res.stdout
    booted, st = res.outputs
    assert booted == ["a", False]
    assert st["active"] == "a" and st["seq"] == 1 and st["trial"] is None
    assert st["last"]["result"] == "confirmed" and st["app"] == "demo" and st["ver"] == "1.0.1"
    assert len(st["digest"]) == 64
    # Second release goes to the other slot; the first stays as it was.
    v2 = app("2.0", extra=5000)
    r = fboard.out("OUT(install(0))", [signer.bundle(v2, seq=2)])
    assert r["status"] == "installed" and r["slot"] == "b"
    assert fboard.out("OUT([app_files('a'), app_files('b')])") == [
        manifest_hashes(v1), manifest_hashes(v2)]
    res = fboard.run("OUT(boot())\nOUT(S.status())")
    assert "APP demo 2.0" in res.stdout
    assert res.outputs[1]["active"] == "b" and res.outputs[1]["seq"] == 2


def test_crashing_update_rolls_back_after_max_boots(fboard, signer):
    fboard.run("OUT(install(0))", [signer.bundle(app("1.0"), seq=1)])
    fboard.run("boot()")
    r = fboard.out("OUT(install(0))", [signer.bundle(app("2.0", crash=True), seq=2)])
    assert r["status"] == "installed"
    for n in (1, 2, 3):  # each trial boot crashes; the board resets
        res = fboard.run("OUT(boot())\nOUT(S.status())")
        assert "APP demo 2.0" in res.stdout and "app crashed" in res.stdout
        assert res.outputs[0] == [None, True]  # the run ended in guard.hw.reset()
        assert res.outputs[1]["trial"]["boots"] == n
    res = fboard.run("OUT(boot())\nOUT(S.status())")
    assert "APP demo 1.0" in res.stdout and "2.0" not in res.stdout
    st = res.outputs[1]
    assert st["active"] == "a" and st["seq"] == 1 and st["trial"] is None
    assert st["last"] == {"result": "rolled_back", "seq": 2, "app": "demo", "ver": "1.0.2",
                          "boots": 3}
    # The confirmed sequence never advanced, but seq 2 was accepted (the highest accepted
    # sequence is 2): the same bundle again is a replay; a fixed release, seq 3, installs.
    assert st["hi"] == 2
    r = fboard.out("OUT(install(0))", [signer.bundle(app("2.1"), seq=2)])
    assert r == {"status": "refused", "reason": "replay"}
    r = fboard.out("OUT(install(0))", [signer.bundle(app("2.1"), seq=3)])
    assert r["status"] == "installed" and r["slot"] == "b"


def test_unconfirmed_app_rolls_back(fboard, signer):
    fboard.run("OUT(install(0))", [signer.bundle(app("1.0"), seq=1)])
    fboard.run("boot()")
    fboard.run("OUT(install(0))", [signer.bundle(app("2.0", confirm=False), seq=2)])
    for _ in range(3):  # runs, never confirms; each reset is a failed trial boot
        assert "APP demo 2.0" in fboard.run("boot()").stdout
    res = fboard.run("boot()\nOUT(S.status())")
    assert "APP demo 1.0" in res.stdout
    assert res.out["last"]["result"] == "rolled_back" and res.out["seq"] == 1


def test_confirm_outside_trial_and_before_boot(fboard, signer):
    assert fboard.out("OUT(guard.confirm())") is False  # nothing installed
    fboard.run("OUT(install(0))", [signer.bundle(app("1.0"), seq=1)])
    # Installed but never booted: nothing has shown it is healthy.
    assert fboard.out("OUT(guard.confirm())") is False
    assert fboard.out(STATUS)["seq"] == 0


def test_only_the_trial_app_confirms_the_trial(fboard, signer):
    # 2.0 has had its trial boot (it never confirms); code running from the confirmed slot a
    # cannot confirm it, code running from slot b (the trial) or at the REPL (no slot) can
    fboard.run("OUT(install(0))", [signer.bundle(app("1.0"), seq=1)])
    fboard.run("boot()")
    fboard.run("OUT(install(0))", [signer.bundle(app("2.0", confirm=False), seq=2)])
    assert "APP demo 2.0" in fboard.run("boot()").stdout
    code = "S.running = IN['slot']\nOUT([guard.confirm(), S.status()['seq']])"
    assert fboard.out(code, slot="a") == [False, 1]
    assert fboard.out(code, slot="b") == [True, 2]


def test_auto_confirm_after_healthy_time(fboard, signer):
    fboard.run("OUT(install(0))", [signer.bundle(app("1.0", confirm=False), seq=1,
                                                confirm_after=1)])
    code = (
        "import time\n"
        "boot()\n"
        "OUT(B.poll())\n"  # too early
        "time.sleep_ms(1100)\n"
        "OUT(B.poll())\n"
        "OUT(S.status())\n"
    )
    res = fboard.run(code)
    early, late, st = res.outputs
    assert early is False and late is True
    assert st["active"] == "a" and st["seq"] == 1 and st["last"]["result"] == "confirmed"


def test_a_release_is_exactly_what_it_lists(fboard, signer):
    # Nothing of the running slot is carried into the next release: not the files the
    # release no longer ships, not a file the running app wrote into its own slot (an
    # implanted lib/urequests.py), not a file named in `remove` (kept valid, no effect).
    v1 = app("1.0") + [("cfg.json", b'{"a": 1}'), ("old.py", b"x = 1\n")]
    fboard.run("OUT(install(0))", [signer.bundle(v1, seq=1)])
    fboard.run("boot()")
    fboard.run("with open('/app/a/lib/urequests.py', 'w') as f:\n    f.write('EVIL = 1')\n"
               "OUT(1)")
    v2 = app("2.0")  # ships main.py and lib/helper.py only
    r = fboard.out("OUT(install(0))", [signer.bundle(v2, seq=2, remove=["old.py"])])
    assert r["status"] == "installed" and r["slot"] == "b"
    assert fboard.out("OUT(app_files('b'))") == manifest_hashes(v2)
    res = fboard.run("OUT(boot())\nOUT([app_files('a'), app_files('b')])")
    assert "APP demo 2.0" in res.stdout
    # once 2.0 is confirmed, the next release takes slot a: its old files are gone first
    fboard.run("OUT(install(0))", [signer.bundle(app("3.0"), seq=3)])
    assert fboard.out("OUT(app_files('a'))") == manifest_hashes(app("3.0"))


def test_a_file_that_becomes_a_folder_and_back(fboard, signer):
    # lib is a file in 1.0, a folder in 2.0, a file again in 3.0 (each slot starts empty)
    v1 = [("main.py", b"import guard\nguard.confirm()\n"), ("lib", b"a file\n")]
    v2 = app("2.0")
    for seq, files in ((1, v1), (2, v2), (3, v1), (4, v2)):
        r = fboard.out("OUT(install(0))", [signer.bundle(files, seq=seq)])
        assert r["status"] == "installed", (seq, r)
        fboard.run("boot()")
        assert fboard.out("OUT(S.status())")["seq"] == seq


def test_status_keeps_last_refusal_in_ram_only(fboard, signer, other_signer):
    res = fboard.run("OUT(install(0))\nOUT(S.status())",
                    [other_signer.bundle(app("1.0"), seq=1)])
    r, st = res.outputs
    assert r == {"status": "refused", "reason": "unknown_key"}
    assert st["refused"] == r and st["last"] is None
    assert fboard.out(STATUS)["refused"] is None  # a new boot: refusals never hit flash


def test_max_boots_is_configurable(fboard, signer):
    fboard.run("OUT(install(0))", [signer.bundle(app("1.0"), seq=1)])
    fboard.run("boot()")
    res = fboard.run("S.configure(1)\nfor v in (0, 11, True, '3'):\n    try:\n        S.configure(v)\n"
                     "    except guard.GuardError as e:\n        OUT(e.args)\nOUT(S.status())")
    *refused, st = res.outputs
    assert refused == [["bad_arg", "max_boots"]] * 4
    assert st.get("state") != "bad"  # (a max_boots of true would be a bad state from now on)
    fboard.run("OUT(install(0))", [signer.bundle(app("2.0", crash=True), seq=2)])
    assert "APP demo 2.0" in fboard.run("boot()").stdout  # the one trial boot allowed
    res = fboard.run("boot()\nOUT(S.status())")
    assert "APP demo 1.0" in res.stdout and res.out["last"]["result"] == "rolled_back"


def test_boot_without_app_or_with_damaged_state_reaches_the_repl(fboard, signer):
    assert fboard.out("OUT(boot())") == [None, False]  # nothing installed: REPL
    fboard.run("OUT(install(0))", [signer.bundle(app("1.0"), seq=1)])
    fboard.run("boot()")
    code = ("with open('/mpguard/state.json', 'w') as f:\n    f.write('{broken')\n"
            "OUT(boot())\nOUT(install(0))")
    res = fboard.run(code, [signer.bundle(app("2.0"), seq=2)])
    assert "guard: state bad_state" in res.stdout and "APP" not in res.stdout
    assert res.outputs == [[None, False], {"status": "refused", "reason": "bad_state"}]
