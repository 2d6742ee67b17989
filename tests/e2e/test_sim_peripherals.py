"""The virtual board's peripherals (docs/sim.md, "Peripherals"): what an ordinary app imports
works through the real mpremote, its outputs are recorded for the test, its inputs are what
the test set, the watchdog resets the board, and os.uname / network.WLAN follow the config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mpguard.sim as simlib

pytestmark = pytest.mark.timeout(120)
MPGUARD = str(Path(sys.executable).parent / "mpguard")

BLINKY = """\
from machine import Pin
import time

led = Pin(2, Pin.OUT)
for _ in range(7):
    led.toggle()
    time.sleep_ms(2)
print("blinked", led.value())
"""


def test_mpremote_run_of_a_blinky_toggles_the_led(sim_factory, tmp_path, mpr):
    port = sim_factory().port
    app = tmp_path / "blinky.py"
    app.write_text(BLINKY)
    assert mpr(port, "run", str(app)).stdout.strip() == "blinked 1"
    log = simlib.io("t")
    assert log.pin(2) == [1, 0, 1, 0, 1, 0, 1]
    assert log.toggles(2) == 7 and log.pins == {"2": [1, 0, 1, 0, 1, 0, 1]}
    assert len({r.boot for r in log.of("pin", 2)}) == 1
    shown = subprocess.run([MPGUARD, "sim", "io", "t", "--json"], capture_output=True, text=True)
    assert shown.returncode == 0
    assert [r["value"] for r in json.loads(shown.stdout)["records"]] == [[str(v)] for v in log.pin(2)]
    simlib.clear_io("t")
    assert simlib.io("t").records == []


def test_peripherals_load_only_when_used_and_cost_the_app_little(sim_factory, mpr):
    port = sim_factory().port
    probe = "import sys\nprint(sorted(m for m in sys.modules if m in ('_simpin', '_simbus', '_simrtc', '_simwlan', '_simio')))"
    assert mpr(port, "exec", probe).stdout.strip() == "[]"
    out = mpr(port, "exec",
              "import gc\ngc.collect()\nf0 = gc.mem_free()\n"
              "from machine import Pin, ADC, I2C, SPI, PWM, RTC, WDT, Signal\nimport network\n"
              "network.WLAN\ngc.collect()\nprint(f0 - gc.mem_free())\n" + probe).stdout.split("\n")
    assert int(out[0]) < 2048  # C in flash on a board; the sim gives back its reserve
    assert out[1].strip() == "['_simbus', '_simio', '_simpin', '_simrtc', '_simwlan']"
    assert "_simfw_" not in mpr(port, "exec", "import os\nprint(os.listdir('/'))").stdout


def test_a_sensor_value_fed_by_the_test_is_what_the_app_reads(sim_factory, mpr):
    port = sim_factory().port
    read = ("from machine import ADC, Pin\na = ADC(Pin(34), atten=ADC.ATTN_11DB)\n"
            "print(a.read(), a.read_u16(), a.read_uv())")
    simlib.set_adc("t", 34, 1234)
    assert mpr(port, "exec", read).stdout.split() == ["1234", str((1234 << 4) | (1234 >> 8)),
                                                      str(1234 * 2450000 // 4095)]
    simlib.set_adc("t", 34, 4095)
    assert mpr(port, "exec", read).stdout.split()[0] == "4095"
    button = "from machine import Pin\nprint(Pin(0, Pin.IN, Pin.PULL_UP).value())"
    assert mpr(port, "exec", button).stdout.strip() == "1"  # pulled up, nobody pressing
    simlib.set_pin("t", 0, 0)
    assert mpr(port, "exec", button).stdout.strip() == "0"


def test_i2c_and_spi_devices_the_test_sets(sim_factory, mpr):
    port = sim_factory().port
    simlib.set_i2c("t", 0x76, bytes(range(32)))
    simlib.set_spi("t", b"\x9f\x12\x34", bus=1)
    out = mpr(port, "exec",
              "from machine import I2C, SPI, Pin\ni = I2C(0, scl=Pin(22), sda=Pin(21))\n"
              "print(i.scan(), i.readfrom_mem(0x76, 0xd0 % 32, 2).hex())\n"
              "i.writeto_mem(0x76, 4, b'\\xaa\\xbb')\nprint(i.readfrom_mem(0x76, 3, 4).hex())\n"
              "try:\n    i.readfrom(0x50, 1)\nexcept OSError as e:\n    print('nack', e.errno)\n"
              "s = SPI(1, baudrate=1000000)\ns.write(b'\\x9f')\nprint(s.read(4).hex())").stdout.split()
    assert out == ["[118]", "1011", "03aabb06", "nack", "19", "9f1234ff"]
    log = simlib.io("t")
    assert log.i2c(0x76) == [(4, b"\xaa\xbb")]
    assert log.spi(1) == [b"\x9f", b"\x00" * 4]
    simlib.set_i2c("t", 0x76, None)  # the device is gone
    assert mpr(port, "exec", "from machine import I2C\nprint(I2C(0).scan())").stdout.strip() == "[]"


def test_pwm_rtc_and_signal(sim_factory, mpr):
    port = sim_factory().port
    simlib.set_rtc("t", (2025, 3, 4, 1, 12, 30, 0, 0))
    out = mpr(port, "exec",
              "from machine import PWM, Pin, RTC, Signal\np = PWM(Pin(4), freq=1000, duty_u16=32768)\n"
              "p.duty_u16(100)\np.deinit()\nprint(RTC().datetime()[:6])\n"
              "s = Signal(Pin(5, Pin.OUT), invert=True)\ns.on()\nprint(Pin(5).value())\n"
              "RTC().datetime((2030, 1, 2, 2, 3, 4, 5, 0))\nprint(RTC().datetime()[:3])").stdout.split("\n")
    assert out[0].strip() == "(2025, 3, 4, 1, 12, 30)"
    assert out[1].strip() == "0" and out[2].strip() == "(2030, 1, 2)"
    log = simlib.io("t")
    assert log.pwm(4) == [(1000, 32768), (1000, 100), (0, 0)]
    assert log.pin(5) == [0]  # an inverted Signal on() drives the pin low
    assert [r.value[:3] for r in log.of("rtc")] == [("2030", "1", "2")]


def test_watchdog_not_fed_resets_the_board_with_wdt_reset(sim_factory, mpr):
    port = sim_factory().port
    mpr(port, "exec", "from machine import WDT\nw = WDT(timeout=300)\nw.feed()")
    st = simlib.wait_for("t", "wdt_resets", 1, timeout=30)
    assert st["hard_resets"] == 0
    assert mpr(port, "eval", "__import__('machine').reset_cause()").stdout.strip() == "3"  # WDT_RESET
    # after the reset the watchdog is off again: the board stays up without feeding
    assert mpr(port, "eval", "1 + 1").stdout.strip() == "2"


def test_watchdog_survives_a_soft_reset_and_is_held_off_by_feeding(sim_factory, mpr):
    port = sim_factory().port
    out = mpr(port, "exec",
              "from machine import WDT\nimport time\nw = WDT(timeout=1500)\n"
              "for _ in range(30):\n    w.feed()\n    time.sleep_ms(50)\nprint('fed')").stdout
    assert out.strip() == "fed" and simlib.stats("t")["wdt_resets"] == 0
    mpr(port, "soft-reset")  # as on an ESP32, a soft reset does not stop it
    simlib.wait_for("t", "wdt_resets", 1, timeout=30)
    assert mpr(port, "eval", "__import__('machine').reset_cause()").stdout.strip() == "3"


def test_uname_and_wlan_follow_the_sim_config(sim_factory, mpr):
    port = sim_factory(net={"ap_active": True, "ap_open": True, "sta_connected": True}).port
    out = mpr(port, "exec",
              "import os, network\nu = os.uname()\nprint(u.sysname, u.release == '.'.join(map(str, __import__('sys').implementation.version[:3])))\n"
              "print(u.machine)\nap = network.WLAN(network.AP_IF)\nsta = network.WLAN(network.STA_IF)\n"
              "print(ap.active(), ap.config('security'), sta.active(), sta.isconnected(), ap.config('mac') != sta.config('mac'))\n"
              "print(hasattr(os, 'system'), hasattr(os, 'VfsPosix'))").stdout.split("\n")
    assert out[0].strip() == "esp32 True"
    assert out[1].strip() == "mpguard virtual board sim with ESP32"
    assert out[2].split() == ["True", "0", "True", "True", "True"]
    assert out[3].split() == ["False", "False"]  # the unix port's extras are not an ESP32's
    simlib.stop("t")
    port = sim_factory(board="esp32c3", net={"ap_active": True, "ap_open": False, "sta_connected": False}).port
    out = mpr(port, "exec",
              "import os, network\nprint(os.uname().machine)\nap = network.WLAN(network.AP_IF)\n"
              "print(ap.active(), ap.config('security') != 0, network.WLAN(network.STA_IF).isconnected())").stdout.split("\n")
    assert out[0].strip() == "mpguard virtual board esp32c3 with ESP32C3"
    assert out[1].split() == ["True", "True", "False"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: simlib.set_adc("t", 5, 100), "has no ADC"),
        (lambda: simlib.set_adc("t", 34, 4096), "0..4095"),
        (lambda: simlib.set_adc("t", 34, True), "0..4095"),
        (lambda: simlib.set_pin("t", 99, 1), "0..48"),
        (lambda: simlib.set_i2c("t", 0x80, b""), "8..119"),
        (lambda: simlib.set_i2c("t", 0x50, b"x" * 5000), "at most 4096 bytes"),
        (lambda: simlib.set_spi("t", "text", bus=1), "at most 4096 bytes"),
        (lambda: simlib.set_rtc("t", (1999, 1, 1, 0, 0, 0, 0, 0)), "2000..2099"),
        (lambda: simlib.set_rtc("t", (2025, 1)), "RTC time is"),
        (lambda: simlib.set_input("t", "dac", 25, 1), "unknown input kind"),
        (lambda: simlib.set_adc("ghost", 34, 1), "no sim named"),
    ],
    ids=["adc-pin", "adc-range", "adc-bool", "pin-range", "i2c-addr", "i2c-size", "spi-type",
         "rtc-year", "rtc-short", "kind", "no-sim"],
)
def test_bad_inputs_are_refused_and_change_nothing(sim_factory, sim_dir, call, message):
    sim_factory()
    simlib.set_adc("t", 34, 7)
    before = (sim_dir / "t" / "io_in.json").read_text()
    with pytest.raises(simlib.SimError, match=message):
        call()
    assert (sim_dir / "t" / "io_in.json").read_text() == before


def test_cli_sets_inputs_and_refuses_bad_ones(sim_factory, sim_dir, mpr):
    port = sim_factory().port
    ok = subprocess.run([MPGUARD, "sim", "io", "t", "--set", "adc:34=1234", "--set", "i2c:0x3c=00ff",
                         "--set", "pin:0=0"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    out = mpr(port, "exec", "from machine import ADC, I2C, Pin\nprint(ADC(Pin(34)).read(), I2C(0).scan(), "
                            "Pin(0, Pin.IN, Pin.PULL_UP).value())").stdout.split()
    assert out == ["1234", "[60]", "0"]
    before = (sim_dir / "t" / "io_in.json").read_text()
    for bad in (["--set", "adc:34=abc"], ["--set", "adc:5=1"], ["--set", "nothing"]):
        r = subprocess.run([MPGUARD, "sim", "io", "t", *bad], capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.startswith("mpguard: ") and "Traceback" not in r.stderr
    assert (sim_dir / "t" / "io_in.json").read_text() == before
