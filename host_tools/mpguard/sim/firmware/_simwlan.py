# _simwlan: network.WLAN of the virtual ESP32 (docs/sim.md, "Peripherals"), loaded on first
# use. The interfaces follow the sim's net facts (`start(net=...)`): ap_active, ap_open,
# sta_connected. No packet goes anywhere: connect() records the SSID and "connects" only
# when the facts say the station is connected.
import _simhw
import _simio

STA_IF = 0
AP_IF = 1
IF_STA = 0
IF_AP = 1
SEC_OPEN = 0
SEC_WEP = 1
SEC_WPA = 2
SEC_WPA2 = 3
SEC_WPA_WPA2 = 4
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
PM_NONE = 0
PM_PERFORMANCE = 1
PM_POWERSAVE = 2

_state = {}  # interface -> {"active": bool, "ssid": str, ...}


def _facts():
    return _simhw.net()


class WLAN:
    def __init__(self, interface_id=STA_IF):
        self._if = interface_id
        if interface_id not in _state:
            f = _facts()
            ap = interface_id == AP_IF
            _state[interface_id] = {
                "active": bool(f.get("ap_active")) if ap else bool(f.get("sta_connected")),
                "ssid": ("ESP_%s" % _mac_tail()) if ap else "",
                "security": SEC_OPEN if (not ap or f.get("ap_open")) else SEC_WPA_WPA2,
                "channel": 1,
                "hidden": False,
                "hostname": "mpy-esp32",
                "connected": bool(f.get("sta_connected")) and not ap,
            }
        self._s = _state[interface_id]

    def active(self, on=None):
        if on is None:
            return self._s["active"]
        self._s["active"] = bool(on)
        if not on:
            self._s["connected"] = False
        _simio.out("wlan", self._if, "active", 1 if on else 0)

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._s["active"]:
            raise OSError("Wifi Not Started")
        self._s["ssid"] = ssid or ""
        self._s["connected"] = bool(_facts().get("sta_connected"))
        _simio.out("wlan", self._if, "connect", ssid)

    def disconnect(self):
        self._s["connected"] = False

    def isconnected(self):
        if self._if == AP_IF:
            return False
        return self._s["active"] and self._s["connected"]

    def status(self, param=None):
        if param == "stations":
            return []
        if param == "rssi":
            return -50
        if self._if == STA_IF and self.isconnected():
            return STAT_GOT_IP
        return STAT_IDLE

    def scan(self):
        return []

    def ifconfig(self, cfg=None):
        if cfg is not None:
            return None
        if self._if == AP_IF and self._s["active"]:
            return ("192.168.4.1", "255.255.255.0", "192.168.4.1", "0.0.0.0")
        if self.isconnected():
            return ("192.168.1.50", "255.255.255.0", "192.168.1.1", "192.168.1.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def config(self, *a, **k):
        if a:
            p = a[0]
            if p == "mac":
                return _mac(self._if)
            if p == "essid":
                p = "ssid"
            if p in ("password", "key"):
                raise ValueError("unknown config param")
            if p not in self._s:
                raise ValueError("unknown config param")
            return self._s[p]
        for p, v in k.items():
            if p == "essid":
                p = "ssid"
            if p in ("key", "password"):
                if self._if == AP_IF:
                    self._s["security"] = SEC_WPA_WPA2 if v else SEC_OPEN
                continue
            self._s[p] = v
        _simio.out("wlan", self._if, "config", ",".join(sorted(k)) or "-")


def _mac(ifc):
    m = bytearray(_simhw.unique_id())
    if ifc == AP_IF:
        m[5] = (m[5] + 1) & 0xFF
    return bytes(m)


def _mac_tail():
    import binascii

    return binascii.hexlify(_mac(AP_IF)[3:]).decode().upper()


def hostname(name=None):
    return "mpy-esp32" if name is None else None


def country(code=None):
    return "EU" if code is None else None
