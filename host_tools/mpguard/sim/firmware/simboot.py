# Entry point of the virtual board's firmware: `micropython -X heapsize=H simboot.py BOOT_JSON`.
# User code runs in this module's globals (the board's __main__).
import _simfw

_simfw.main(globals())
