# _simio: the link between the virtual board's peripherals and the test (docs/sim.md,
# "Peripherals"). Loaded only when an app uses a peripheral (_simhw.load). Outputs are
# appended to NAME/io.log, one line each: "BOOT MS KIND ID VALUE..." (MS since this boot);
# inputs are read from NAME/io_in.json, which the host rewrites whole. Both go through a
# VfsPosix of the sim's folder that is never mounted: nothing of the host shows on the board.
import time
import _simhw

_LOG_MAX = 1 << 20  # past this the log starts again with a "trunc" line (host: earlier dropped)

_fs = _simhw._os.VfsPosix(_simhw._cfg["dir"])
_log = None
_boot = _simhw._cfg["boot"]
_t0 = _simhw._cfg["t0"]


def out(kind, id, *vals):
    global _log
    if _log is None:
        _log = _fs.open("/io.log", "a")
    line = "%d %d %s %s %s\n" % (_boot, time.ticks_diff(time.ticks_ms(), _t0), kind, id,
                                  " ".join([str(v) for v in vals]))
    if _fs.stat("/io.log")[6] + len(line) > _LOG_MAX:
        _log.close()
        _log = _fs.open("/io.log", "w")
        _log.write("%d 0 trunc - -\n" % _boot)
    _log.write(line)


def inputs(kind):
    # The inputs of one kind the test set: {id: value}, {} when none.
    import json

    try:
        with _fs.open("/io_in.json", "r") as f:
            return json.load(f).get(kind) or {}
    except (OSError, ValueError):
        return {}


def get(kind, id, default=None):
    return inputs(kind).get(str(id), default)
