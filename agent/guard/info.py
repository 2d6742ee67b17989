# Facts about the running interpreter and agent, cheap to gather and safe to share.
import gc
import sys

import guard


def facts():
    gc.collect()
    impl = sys.implementation
    mpy = getattr(impl, "_mpy", 0)
    return {
        "agent": guard.VERSION,
        "micropython": ".".join(str(v) for v in impl.version[:3]),
        "mpy_version": mpy & 0xFF,
        "mpy_sub": (mpy >> 8) & 3,
        "platform": sys.platform,
        "heap_free": gc.mem_free(),
        "heap_alloc": gc.mem_alloc(),
    }
