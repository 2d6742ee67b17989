# _simbus: machine.I2C/SoftI2C and SPI/SoftSPI of the virtual ESP32 (docs/sim.md,
# "Peripherals"), loaded on first use. I2C devices are the ones the test set: an address
# with a register memory (`set_i2c`), which the app reads and writes like an EEPROM or a
# sensor's registers; an address nobody set does not answer (OSError ENODEV, as a NACK on
# the esp32 port). SPI records what the app writes and reads what the test set, in order,
# then 0xff (an idle MISO line).
import _simio

_devs = {}  # (bus, addr) -> [version, bytearray]: the device memory as the app changed it


def _hex(b):
    import binascii

    return binascii.hexlify(b).decode() or "-"


class I2C:
    def __init__(self, id=0, *, scl=None, sda=None, freq=400000, timeout=50000):
        self._bus = id if isinstance(id, int) else 0
        self._ptr = {}

    def init(self, *a, **k):
        pass

    def deinit(self):
        pass

    def _dev(self, addr):
        want = _simio.get("i2c", "%d:%d" % (self._bus, addr))
        if want is None:
            raise OSError(19)  # ENODEV: no device acknowledged the address
        key = (self._bus, addr)
        d = _devs.get(key)
        if d is None or d[0] != want["v"]:
            import binascii

            d = _devs[key] = [want["v"], bytearray(binascii.unhexlify(want["mem"]))]
        return d[1]

    def scan(self):
        found = []
        for k in _simio.inputs("i2c"):
            bus, addr = k.split(":")
            if int(bus) == self._bus:
                found.append(int(addr))
        return sorted(found)

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        mem = self._dev(addr)
        for i in range(len(buf)):
            buf[i] = mem[(memaddr + i) % len(mem)] if mem else 0xFF
        self._ptr[addr] = memaddr + len(buf)

    def readfrom_mem(self, addr, memaddr, n, *, addrsize=8):
        b = bytearray(n)
        self.readfrom_mem_into(addr, memaddr, b, addrsize=addrsize)
        return bytes(b)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        mem = self._dev(addr)
        for i in range(len(buf)):
            if mem:
                mem[(memaddr + i) % len(mem)] = buf[i]
        self._ptr[addr] = memaddr + len(buf)
        _simio.out("i2c", "%d:%d" % (self._bus, addr), memaddr, _hex(buf))

    def readfrom_into(self, addr, buf, stop=True):
        self.readfrom_mem_into(addr, self._ptr.get(addr, 0), buf)

    def readfrom(self, addr, n, stop=True):
        b = bytearray(n)
        self.readfrom_into(addr, b, stop)
        return bytes(b)

    def writeto(self, addr, buf, stop=True):
        # The first byte sets the register pointer, the rest are written from there.
        self._dev(addr)
        if len(buf):
            self.writeto_mem(addr, buf[0], memoryview(buf)[1:])
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        b = bytearray()
        for v in vector:
            b += v
        return self.writeto(addr, b, stop)


class SoftI2C(I2C):
    def __init__(self, scl=None, sda=None, *, freq=400000, timeout=50000):
        I2C.__init__(self, -1)


class SPI:
    MSB = 0
    LSB = 1
    _pos = {}  # bus -> [version, position] of the MISO bytes the test set

    def __init__(self, id=1, baudrate=1000000, **kw):
        self._bus = id if isinstance(id, int) else -1
        self._baud = baudrate

    def init(self, baudrate=None, **kw):
        if baudrate:
            self._baud = baudrate

    def deinit(self):
        pass

    def _miso(self, n):
        import binascii

        want = _simio.get("spi", self._bus)
        if want is None:
            return b"\xff" * n
        p = SPI._pos.get(self._bus)
        if p is None or p[0] != want["v"]:
            p = SPI._pos[self._bus] = [want["v"], 0]
        data = binascii.unhexlify(want["data"])[p[1] : p[1] + n]
        p[1] += n
        return data + b"\xff" * (n - len(data))

    def write(self, buf):
        _simio.out("spi", self._bus, _hex(buf))

    def read(self, n, write=0):
        _simio.out("spi", self._bus, _hex(bytes((write,)) * n))
        return self._miso(n)

    def readinto(self, buf, write=0):
        buf[:] = self.read(len(buf), write)

    def write_readinto(self, wbuf, rbuf):
        self.write(wbuf)
        rbuf[:] = self._miso(len(rbuf))


class SoftSPI(SPI):
    def __init__(self, baudrate=500000, **kw):
        SPI.__init__(self, -1, baudrate)
