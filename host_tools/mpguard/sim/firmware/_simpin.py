# _simpin: machine.Pin, PWM and ADC of the virtual ESP32 (docs/sim.md, "Peripherals"),
# loaded on first use. Pin writes and PWM settings are recorded (_simio.out); a pin in input
# mode and an ADC read what the test set (_simio.get), else the pull level / 0.
from machine import PinBase
import _simio

_VALID = None  # the chip's GPIO numbers (ESP32: 0-39 less 20, 24, 28-31)
_latch = {}  # pin -> level last written
_mode = {}  # pin -> mode
_pull = {}


def _check(id):
    global _VALID
    if _VALID is None:
        import _simhw

        chip = _simhw.board().get("chip", "esp32")
        n = {"esp32": 40, "esp32s2": 47, "esp32s3": 49, "esp32c3": 22, "esp32c6": 31}.get(chip, 40)
        _VALID = [i for i in range(n) if chip != "esp32" or i not in (20, 24, 28, 29, 30, 31)]
    if isinstance(id, Pin):
        return id._id
    if not isinstance(id, int) or id not in _VALID:
        raise ValueError("invalid pin")
    return id


class Pin(PinBase):
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    PULL_HOLD = 4
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        self._id = _check(id)
        self._irq = None
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        if mode != -1:
            _mode[self._id] = mode
        if pull != -1:
            _pull[self._id] = pull
        if value is not None:
            self._set(value)

    def _set(self, v):
        v = 1 if v else 0
        _latch[self._id] = v
        _simio.out("pin", self._id, v)

    def value(self, v=None):
        if v is not None:
            self._set(v)
            return None
        if _mode.get(self._id) in (Pin.OUT, Pin.OPEN_DRAIN):
            return _latch.get(self._id, 0)
        got = _simio.get("pin", self._id)
        if got is not None:
            return 1 if got else 0
        return 1 if _pull.get(self._id) == Pin.PULL_UP else 0

    __call__ = value

    def on(self):
        self._set(1)

    def off(self):
        self._set(0)

    def toggle(self):
        self._set(1 - _latch.get(self._id, 0))

    def mode(self, m=None):
        if m is None:
            return _mode.get(self._id, Pin.IN)
        _mode[self._id] = m

    def pull(self, p=None):
        if p is None:
            return _pull.get(self._id)
        _pull[self._id] = p

    def drive(self, d=None):
        return Pin.DRIVE_2 if d is None else None

    def irq(self, handler=None, trigger=3, *, wake=None, hard=False):
        # Recorded, never fired: the sim has no edges on its pins (docs/sim.md).
        self._irq = (handler, trigger)
        _simio.out("irq", self._id, trigger)
        return self

    def __repr__(self):
        return "Pin(%d)" % self._id


class PWM:
    def __init__(self, dest, *, freq=None, duty=None, duty_u16=None, duty_ns=None, invert=False):
        self._pin = _check(dest)
        self._freq = 5000
        self._duty = 0
        self.init(freq=freq, duty=duty, duty_u16=duty_u16, duty_ns=duty_ns)

    def init(self, *, freq=None, duty=None, duty_u16=None, duty_ns=None, invert=False):
        if freq is not None:
            if not 1 <= freq <= 40000000:
                raise ValueError("frequency must be from 1Hz to 40MHz")
            self._freq = freq
        if duty is not None:
            self._duty = min(1023, max(0, duty)) * 65535 // 1023
        if duty_u16 is not None:
            self._duty = min(65535, max(0, duty_u16))
        if duty_ns is not None:
            self._duty = min(65535, duty_ns * self._freq * 65535 // 1000000000)
        _simio.out("pwm", self._pin, self._freq, self._duty)

    def freq(self, f=None):
        if f is None:
            return self._freq
        self.init(freq=f)

    def duty(self, d=None):
        if d is None:
            return self._duty * 1023 // 65535
        self.init(duty=d)

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        self.init(duty_u16=d)

    def duty_ns(self, d=None):
        if d is None:
            return self._duty * 1000000000 // (self._freq * 65535)
        self.init(duty_ns=d)

    def deinit(self):
        _simio.out("pwm", self._pin, 0, 0)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12
    _FULL_UV = (950000, 1250000, 1750000, 2450000)  # full scale per attenuation (ESP32 docs)

    def __init__(self, pin, *, atten=0):
        self._pin = _check(pin)
        if self._pin not in (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39):
            raise ValueError("invalid pin")
        self._atten = atten
        self._bits = 12

    def init(self, *, atten=None, sample_ns=None):
        if atten is not None:
            self._atten = atten

    def atten(self, a):
        self._atten = a

    def width(self, bits):
        self._bits = bits

    def _raw(self):
        v = _simio.get("adc", self._pin, 0)
        return min(4095, max(0, int(v)))

    def read(self):
        return self._raw() >> (12 - self._bits)

    def read_u16(self):
        r = self._raw()
        return (r << 4) | (r >> 8)

    def read_uv(self):
        return self._raw() * ADC._FULL_UV[self._atten & 3] // 4095
