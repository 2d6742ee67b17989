"""The trial watchdog (issue #14): a hung trial app must count as a failed boot.

On a trial boot guard.boot arms the hardware watchdog (guard.hw.watchdog: machine.WDT on a
chip, the sim's _simhw.wdt) for the manifest's `confirm` seconds plus the state's `wdt`
seconds, next to a 1 s timer tick; nothing feeds it until the trial is confirmed, then the
tick does. Here the board's hardware seam records every arming and feed (tests/agent/mp/
_board.py Hw: a feed is a second arming with the same time) and machine.Timer is a stand-in
whose tick the test fires.
"""

from __future__ import annotations

from agentboard import app

WDT = """
with_timer()
Hw.wdt_ms, Hw.feeds, Timer.inits = [], 0, []
booted = boot()
OUT([booted, list(Hw.wdt_ms), Hw.feeds, list(Timer.inits)])
"""


def _install(fboard, signer, seq, **kw):
    files = kw.pop("files", None) or app(f"{seq}.0", confirm=kw.pop("confirm", True))
    r = fboard.out("OUT(install(0))", [signer.bundle(files, seq=seq, **kw)])
    assert r["status"] == "installed", r


def test_trial_boot_arms_the_watchdog_and_feeds_it_only_once_confirmed(fboard, signer):
    _install(fboard, signer, 1, confirm=False, confirm_after=30)
    code = WDT + ("tick(5)\nOUT(Hw.feeds)\n"  # not confirmed: no feed
                  "OUT(guard.confirm())\nOUT(Hw.feeds)\n"
                  "tick(3)\nOUT(Hw.feeds)\n")
    res = fboard.run(code)
    (booted, armed, feeds, timers), before, confirmed, at_confirm, after = res.outputs
    assert booted == ["a", False] and armed == [(30 + 120) * 1000] and feeds == 0
    assert timers == [[0, 1, 1000]]  # Timer(0), periodic, every second
    assert before == 0 and confirmed is True and at_confirm == 1 and after == 4


def test_the_healthy_time_confirms_from_the_tick(fboard, signer):
    _install(fboard, signer, 1, confirm=False, confirm_after=1)
    code = WDT + "import time\ntime.sleep_ms(1100)\ntick()\nOUT([S.status()['seq'], Hw.feeds])"
    res = fboard.run(code)
    assert res.outputs[-1] == [1, 1] and "guard: confirmed" in res.stdout


def test_confirmed_boot_arms_nothing(fboard, signer):
    _install(fboard, signer, 1)
    fboard.run("boot()")
    booted, armed, feeds, timers = fboard.out(WDT)
    assert booted == ["a", False] and armed == [] and timers == []


def test_watchdog_time_is_configurable_and_can_be_off(fboard, signer):
    _install(fboard, signer, 1, confirm=False)
    fboard.run("S.configure(wdt=15)\nOUT(1)")
    assert fboard.out(WDT)[1] == [15000]  # no healthy time: the app has wdt seconds
    fboard.run("S.configure(wdt=0)\nOUT(1)")
    booted, armed, _, timers = fboard.out(WDT)
    assert armed == [] and timers == []  # no watchdog, no healthy time: no tick either
    res = fboard.run("out = []\nfor w in (5, 3601, True, -1):\n"
                     "    try:\n        S.configure(wdt=w)\n    except guard.GuardError as e:\n"
                     "        out.append(e.args)\nOUT(out)")
    assert res.out == [["bad_arg", "wdt"]] * 4


def test_a_board_without_a_watchdog_or_timer_still_runs_its_trial(fboard, signer):
    _install(fboard, signer, 1, confirm=False, confirm_after=30)
    code = ("class NoWdt(Hw):\n    wdt = None\n"
            "class Refuses(Hw):\n    def wdt(self, ms):\n        raise ValueError('timeout')\n"
            "out = []\n"
            "for hwb in (NoWdt(), Refuses()):\n"
            "    hw.use(sim=hwb)\n    with_timer()\n    out.append(boot())\n"
            "OUT(out)\n")
    res = fboard.run(code)
    assert res.out == [["a", False], ["a", False]]  # ran, no reset
    assert res.stdout.count("APP demo 1.0") == 2
    res = fboard.run("class NoWdt(Hw):\n    wdt = None\n"
                     "hw.use(sim=NoWdt())\nOUT([hw.watchdog(1000), hw.feed()])")
    assert res.out == [False, None]  # a board without a watchdog: nothing armed, feeds nothing
    # no machine.Timer (the unix port): no tick, so no watchdog either (nothing could feed a
    # confirmed trial); the app runs
    res = fboard.run("Hw.wdt_ms = []\nOUT([boot(), Hw.wdt_ms])")
    assert res.out == [["a", False], []]


def test_a_tampered_confirm_time_stays_within_a_timers_range(fboard, signer):
    _install(fboard, signer, 1, confirm=False, confirm_after=30)
    fboard.run("st = S.load()\nst['trial']['confirm'] = 10 ** 12\nS.save(st)\nOUT(1)")
    assert fboard.out(WDT)[1] == [0x7FFFFFFF]


def test_an_install_feeds_a_watchdog_armed_in_its_session(fboard, signer):
    _install(fboard, signer, 1, confirm=True)
    b2 = signer.bundle(app("2.0", extra=20000), seq=2)
    code = WDT + "n = Hw.feeds\nOUT(install(0)['status'])\nOUT(Hw.feeds - n)"
    res = fboard.run(code, [b2])
    assert res.outputs[-2] == "installed" and res.outputs[-1] >= 3  # per chunk of every file


def test_the_tick_stops_when_there_is_nothing_to_feed_or_confirm(fboard, signer):
    # a board without a watchdog: with no healthy time the tick stops at once; with one, it
    # stops at the first tick after the confirm
    _install(fboard, signer, 1, confirm=False)
    code = ("class NoWdt(Hw):\n    wdt = None\nhw.use(sim=NoWdt())\n"
            "with_timer()\nTimer.inits = []\nboot()\nOUT(list(Timer.inits))")
    assert fboard.out(code) == [[0, 1, 1000], [0, "deinit"]]
    _install(fboard, signer, 2, confirm=False, confirm_after=1)
    code = ("class NoWdt(Hw):\n    wdt = None\nhw.use(sim=NoWdt())\n"
            "with_timer()\nTimer.inits = []\nboot()\nimport time\ntime.sleep_ms(1100)\n"
            "tick()\nOUT(list(Timer.inits))\ntick()\nOUT(list(Timer.inits))")
    res = fboard.run(code)
    assert res.outputs == [[[0, 1, 1000]], [[0, 1, 1000], [0, "deinit"]]]
    assert "guard: confirmed" in res.stdout
