"""mpguard: host side of a secure-configuration agent for MicroPython boards."""

__version__ = "0.1.0"
