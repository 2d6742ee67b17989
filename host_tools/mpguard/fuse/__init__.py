"""eFuses: `mpguard fuse status` and `mpguard fuse harden` (docs/fuse.md).

    espefuse.py  where a chip's eFuses are (Target: a port, or an `espefuse --virt` file) and
                 the installed espefuse run against them
    status.py    espefuse's summary in the words of the board's attestation, and the anchors pin
    profiles.py  the hardening profiles as data (development, production) per chip family
    harden.py    a plan of burns, its dry run, and the burn (only with the confirmation flag)
"""

from ..errors import FuseError
from . import espefuse
from .espefuse import Target, new_virtual_chip, target_for
from .harden import CONFIRM_FLAG, Burned, Plan, anchors_bytes, burn, plan
from .profiles import PROFILES
from .status import FuseStatus, status

__all__ = ["CONFIRM_FLAG", "FuseError", "espefuse", "PROFILES", "Burned", "FuseStatus", "Plan", "Target", "anchors_bytes",
           "burn", "new_virtual_chip", "plan", "status", "target_for"]
