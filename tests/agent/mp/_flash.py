# Test support on MicroPython (not agent code): the one flash block device of the agent's
# tests and benches. A file-backed littlefs2 block device (extended interface) with 4 KiB
# blocks, as on an ESP32. It counts block writes (program or erase) and can cut power: with
# `cut` set, write number `cut` raises Cut and nothing more reaches the file.
import os

_BS = 4096
_FF = b"\xff" * 512


class Cut(BaseException):  # power is gone: nothing of the agent may catch it
    pass


class Flash:
    def __init__(self, path, n):
        self.f = open(path, "r+b")
        self.n = n
        self.writes = 0
        self.cut = None
        self.hit = False

    def readblocks(self, b, buf, off=0):
        self.f.seek(b * _BS + off)
        self.f.readinto(buf)

    def _w(self):
        if self.cut is not None and self.writes + 1 >= self.cut:
            self.hit = True
            raise Cut()
        self.writes += 1

    def writeblocks(self, b, buf, off=None):
        self._w()
        self.f.seek(b * _BS + (off or 0))
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.n
        if op == 5:  # block size
            return _BS
        if op == 6:  # erase
            self._w()
            self.f.seek(arg * _BS)
            for _ in range(_BS // 512):
                self.f.write(_FF)
        return 0


def mount(fl, mkfs=False):
    # Mount `fl` at "/" (the board's root), formatting it first if asked.
    if mkfs:
        os.VfsLfs2.mkfs(fl)
    try:
        os.umount("/")
    except OSError:
        pass
    os.mount(os.VfsLfs2(fl), "/")
    os.chdir("/")
