# `machine` on the virtual board: the unix port's machine module plus what an ESP32 has
# and the unix port lacks (reset, soft_reset, unique_id, reset_cause and its constants).
from machine import *  # noqa: F403  (the built-in module, imported before this one replaces it)
import _simhw

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

reset = _simhw.reset
soft_reset = _simhw.soft_reset
unique_id = _simhw.unique_id
reset_cause = _simhw.reset_cause


def freq(hz=None):
    return 160000000
