"""The firmware as a process: start to READY, idle CPU, resident memory, SIGTERM to exit.

Method: ``python -m piano_buddy run --mode box`` (mock pins, as on a machine without GPIO)
plays into a JACK dummy server through real alsa-lib, with ``NOTIFY_SOCKET`` pointing at a
datagram socket of ours, as systemd would. Start to READY is from ``Popen`` to the
``READY=1`` datagram; idle CPU is the process's utime+stime over an idle stretch (JACK runs
in its own process and is not counted); memory is VmRSS after that stretch.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import Figure


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(quick: bool = False) -> list[Figure]:
    from tests.audio_rig import JackServer, jack_missing_reason

    reason = jack_missing_reason()
    if reason:
        return [Figure("firmware", f"skipped: {reason}", float("nan"), "")]
    idle = 5.0 if quick else 20.0
    with tempfile.TemporaryDirectory() as tmp, JackServer(realtime=True) as jack:
        sock_path = os.path.join(tmp, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(30)
        conf = Path(tmp) / "config.toml"
        conf.write_text(f'[recording]\nfolder = "{tmp}/rec"\n[midi]\nenabled = false\n')
        env = jack.env()
        env.update(NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="2000000",
                   PIANO_BUDDY_LOG="WARNING")
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "piano_buddy", "--config", str(conf),
                                 "run", "--mode", "box"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            ready = None
            while ready is None:
                msg = sock.recv(4096).decode()
                if "READY=1" in msg:
                    ready = time.monotonic() - t0
            time.sleep(2.0)   # warm-up
            c0, w0 = _cpu_seconds(proc.pid), time.monotonic()
            time.sleep(idle)
            cpu = (_cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0) * 100
            rss = _rss_mb(proc.pid)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
            stop_s = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
            sock.close()
    return [
        Figure("firmware", "process start -> READY=1", ready, "s",
               note="models loaded, audio open"),
        Figure("firmware", "idle CPU (share of one core)", cpu, "%", 3.0,
               note=f"{idle:.0f} s idle, JACK-paced 128-frame periods"),
        Figure("firmware", "resident memory (VmRSS)", rss, "MB", 80.0),
        Figure("firmware", "SIGTERM -> exit", stop_s, "s", 1.0, note=f"exit code {code}"),
    ]
