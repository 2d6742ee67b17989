"""The virtual ESP32 board (`mpguard sim`, docs/architecture.md section 3). See docs/sim.md."""

from .core import (
    SimError,
    SimInfo,
    arm_power_cut,
    disarm_power_cut,
    get,
    list_sims,
    start,
    stats,
    stop,
    stop_all,
    wait_for,
)

__all__ = [
    "SimError",
    "SimInfo",
    "arm_power_cut",
    "disarm_power_cut",
    "get",
    "list_sims",
    "start",
    "stats",
    "stop",
    "stop_all",
    "wait_for",
]
