"""espefuse runs forked from a server that imported it once (fuse/efserver.py, decisions/0027)
give what the `espefuse` command gives: the same summaries, burns, failures and exit codes,
runs side by side from threads, a run that hangs ended at its timeout; MPGUARD_ESPEFUSE_FORK=0
runs the command itself. Real espefuse on virtual chips, both ways."""

from __future__ import annotations

import os
import threading
import time

import pytest

from mpguard.errors import FuseError
from mpguard.fuse import espefuse as ef

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(params=["fork", "process"])
def way(request, monkeypatch):
    monkeypatch.setenv("MPGUARD_ESPEFUSE_FORK", "1" if request.param == "fork" else "0")
    return request.param


def _target(path, chip="esp32s3"):
    return ef.Target(chip, chip, efuse_file=path)


def _used_server() -> bool:
    s = ef._servers.get(os.getpid())
    return s is not None and s.ok


def test_summary_burn_and_read_back_agree_both_ways(tmp_path, blank_chip, way):
    t = _target(blank_chip("esp32s3"))
    before, _ = ef.summary(t)
    assert before["DIS_USB_JTAG"]["value"] is False
    out = ef.run(ef.command(t, "--do-not-confirm", "burn-efuse", "DIS_USB_JTAG", "1"))
    assert "Successful" in out
    after, _ = ef.summary(t)
    assert after["DIS_USB_JTAG"]["value"] is True
    assert {k: v for k, v in after.items() if k != "DIS_USB_JTAG"} == \
        {k: v for k, v in before.items() if k != "DIS_USB_JTAG"}
    if way == "fork":
        assert _used_server()


def test_the_same_bytes_either_way(tmp_path, blank_chip, monkeypatch):
    files = {}
    for w in ("1", "0"):
        monkeypatch.setenv("MPGUARD_ESPEFUSE_FORK", w)
        f = blank_chip("esp32c3", tmp_path / w / "e.bin")
        t = _target(f, "esp32c3")
        ef.run(ef.command(t, "--do-not-confirm", "burn-efuse", "DIS_PAD_JTAG", "1",
                          "DIS_DOWNLOAD_MODE", "1"))
        files[w] = (f.read_bytes(), ef.summary(t)[0])
    assert files["1"] == files["0"]


def test_a_failing_command_fails_the_same_both_ways(tmp_path, blank_chip, monkeypatch):
    got = {}
    for w in ("1", "0"):
        monkeypatch.setenv("MPGUARD_ESPEFUSE_FORK", w)
        t = _target(blank_chip("esp32", tmp_path / w / "e.bin"), "esp32")
        with pytest.raises(FuseError) as e:
            ef.run(ef.command(t, "--do-not-confirm", "burn-efuse", "NO_SUCH_FIELD", "1"))
        got[w] = str(e.value)
    assert got["1"] == got["0"], got
    # what went wrong, from espefuse's error box (not the box's last lines)
    assert got["1"].startswith("espefuse failed (Invalid value for"), got["1"]
    assert "Invalid eFuse name 'NO_SUCH_FIELD'" in got["1"] and "│" not in got["1"]


def test_a_fatal_error_is_said_in_its_own_words(tmp_path, blank_chip, way):
    t = _target(blank_chip("esp32"), "esp32")
    with pytest.raises(FuseError) as e:
        ef.run(ef.command(t, "--do-not-confirm", "burn-efuse", "JTAG_DISABLE", "5"))
    assert "New value is not accepted for eFuse 'JTAG_DISABLE'" in str(e.value)


def test_runs_from_several_threads_at_once(tmp_path, blank_chip, way):
    targets = [_target(blank_chip("esp32s3", tmp_path / f"{i}.bin")) for i in range(4)]
    results: dict[int, object] = {}

    def one(i):
        try:
            ef.run(ef.command(targets[i], "--do-not-confirm", "burn-efuse",
                              "DIS_USB_JTAG", "1") if i % 2 else ef.command(targets[i], "summary"))
            results[i] = ef.summary(targets[i])[0]["DIS_USB_JTAG"]["value"]
        except Exception as e:  # noqa: BLE001  (the assertion below names it)
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert results == {0: False, 1: True, 2: False, 3: True}


def test_a_run_that_hangs_ends_at_its_timeout(tmp_path, way):
    fifo = tmp_path / "efuse.fifo"  # espefuse opens it and waits for a writer: forever
    os.mkfifo(fifo)
    t = _target(fifo)
    t0 = time.monotonic()
    with pytest.raises(FuseError, match="no answer in 3 s"):
        ef.run(ef.command(t, "summary"), timeout=3)
    assert time.monotonic() - t0 < 60
    # the run was killed: a writer soon finds no reader (ENXIO)
    end = time.monotonic() + 10
    while True:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            break
        assert time.monotonic() < end, "the hung espefuse run still holds the FIFO open"
        time.sleep(0.05)


def test_a_ctrl_c_at_the_terminal_does_not_end_the_server_or_its_runs(blank_chip, monkeypatch):
    # a terminal's Ctrl-C reaches the whole process group: the server (and each run it forks,
    # a burn among them) ignores SIGINT, so a station's Ctrl-C lets the running step finish
    import signal

    monkeypatch.setenv("MPGUARD_ESPEFUSE_FORK", "1")
    t = _target(blank_chip("esp32s3"))
    ef.summary(t)
    server = ef._servers[os.getpid()]
    pid = server.z.proc.pid
    status = open(f"/proc/{pid}/status").read()
    ignored = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigIgn:")), 16)
    assert ignored & (1 << (signal.SIGINT - 1)), "the espefuse server does not ignore SIGINT"
    os.kill(pid, signal.SIGINT)
    time.sleep(0.3)
    assert server.z.proc.poll() is None
    out = ef.run(ef.command(t, "--do-not-confirm", "burn-efuse", "DIS_USB_JTAG", "1"))
    assert "Successful" in out and ef._servers[os.getpid()] is server and server.ok


def test_a_ctrl_c_during_a_burn_is_raised_after_it(blank_chip, monkeypatch):
    # `mpguard fuse harden --burn` at a terminal: the Ctrl-C ended mpguard, and its espefuse
    # fork server, and so the burn, part way. It is held until the run ends, then raised.
    import signal

    monkeypatch.setenv("MPGUARD_ESPEFUSE_FORK", "1")
    t = _target(blank_chip("esp32s3"))
    ef.summary(t)
    real = ef._Server.run
    handler = signal.getsignal(signal.SIGINT)

    def interrupted(self, args, timeout):  # the Ctrl-C comes while the burn is under way
        os.kill(os.getpid(), signal.SIGINT)
        return real(self, args, timeout)

    monkeypatch.setattr(ef._Server, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ef.run(ef.command(t, "--do-not-confirm", "burn-efuse", "DIS_USB_JTAG", "1"))
    monkeypatch.setattr(ef._Server, "run", real)
    assert ef.summary(t)[0]["DIS_USB_JTAG"]["value"] is True  # the burn went through
    assert signal.getsignal(signal.SIGINT) is handler  # put back as it was
