# _simflash: the virtual board's flash, part of its firmware (see _simfw). A block device
# over the image file for os.VfsLfs2 that counts block reads, writes and erases, reports
# each write and erase to the supervisor, and cuts the power at an armed block write (the
# cut record and the events are in _simev).
import os
import _simev

_img = None
_bs = 4096
_nblk = 0
_ff = b""  # 0xff bytes an erase writes, a few hundred at a time (not a whole block of heap)
_nw = 0  # block writes, erases and reads since this boot
_ne = 0
_nr = 0
_base = None  # the same counts over the sim's life until this boot: [writes, erases, reads]
_ev = None  # _simfw.event
_cutf = None
_cutbuf = bytearray(_simev.CUT_LEN)
_cutrec = b""  # the cut record taken last
_cutat = 0  # cut at this block write number of the sim's life (0: not armed)
_cutpm = 1000  # permille of that write that reaches the flash


def init(cfg, event):
    # cfg: the boot config the supervisor wrote; cfg["cut"] = [seq, at, permille] when an
    # earlier boot took the cut record `seq` (the cut stays at the same write).
    global _img, _bs, _nblk, _ff, _base, _ev, _cutf, _cutrec, _cutat, _cutpm
    _ev = event
    _img = open(cfg["image"], "r+b")
    _cutf = open(cfg["cut_file"], "rb")
    _bs = cfg["block_size"]
    _nblk = cfg["blocks"]
    _ff = b"\xff" * min(_bs, 512)
    _base = cfg["stats_base"]
    cut = cfg["cut"]
    rec = _read()
    if cut and rec and int(rec.split()[0]) == cut[0]:
        _cutrec, _cutat, _cutpm = rec, cut[1], cut[2]


def _read():
    _cutf.seek(0)
    n = _cutf.readinto(_cutbuf)
    rec = bytes(_cutbuf[:n])
    return rec if rec.endswith(b"\n") else b""


def _take(rec, n, pm):
    # The N-th block write from now is the cut (0: none); tell the supervisor which it is.
    global _cutrec, _cutat, _cutpm
    _cutrec = rec
    _cutat = _base[0] + _nw + n if n > 0 else 0
    _cutpm = pm
    _ev(_simev.ARMED, int(rec.split()[0]), _cutat, pm)


def arm_now(n, pm):
    # The cut `start` asked for, counted from the moment the board answers.
    rec = _read()
    if rec:
        _take(rec, n, pm)


def _check():
    # Before every block write: a new cut record counts from this write.
    rec = _read()
    if rec and rec != _cutrec:
        p = rec.split()
        _take(rec, int(p[1]), int(p[2]))


def die():
    # Power off now: no cleanup, no unwinding, nothing user code could catch. Until the kill
    # lands, again: a kill that did not (a fork that failed on a loaded host) left this loop
    # spinning, where a Ctrl-C from the host raised KeyboardInterrupt into the code that reset
    # the board, which ran on (and the sim, told of a reset, made the next soft reset a hard
    # one: the soft-reset deadline misses of the suite). The shell kills its parent only while
    # that is still this boot, whose folder (the sim's) the shell runs in: a boot the supervisor
    # killed meanwhile (a stop, reflash or watchdog at that moment) left the shell to whatever
    # process adopts orphans, and `kill -9 $PPID` killed that one (a child subreaper timing the
    # suite).
    while True:
        try:
            os.system("[ /proc/$PPID/cwd -ef . ] && kill -9 $PPID")
        except BaseException:
            pass


def stats():
    return {"writes": _base[0] + _nw, "erases": _base[1] + _ne, "reads": _base[2] + _nr}


class Flash:
    def readblocks(self, n, buf, off=0):
        global _nr
        _nr += 1
        _img.seek(n * _bs + off)
        _img.readinto(buf)

    def writeblocks(self, n, buf, off=None):
        global _nw
        if off is None:
            # simple interface: whole blocks, erase first (as extmod's flash does)
            for i in range(len(buf) // _bs):
                self.ioctl(6, n + i)
                self.writeblocks(n + i, memoryview(buf)[i * _bs : (i + 1) * _bs], 0)
            return
        _check()
        _nw += 1
        _img.seek(n * _bs + off)
        if _cutat and _base[0] + _nw == _cutat:
            k = len(buf) * _cutpm // 1000
            _img.write(memoryview(buf)[:k])
            _ev(_simev.CUT, n, off, k)
            die()
        _img.write(buf)
        _ev(_simev.WRITE, n)

    def ioctl(self, op, arg):
        global _ne
        if op == 4:
            return _nblk
        if op == 5:
            return _bs
        if op == 6:
            _ne += 1
            _img.seek(arg * _bs)
            left = _bs
            while left >= len(_ff):
                _img.write(_ff)
                left -= len(_ff)
            if left:
                _img.write(memoryview(_ff)[:left])
            _ev(_simev.ERASE, arg)
        return 0
