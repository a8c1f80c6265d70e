"""The firmware as a process: start to READY, idle CPU, resident memory, SIGTERM to exit.

Method: ``python -m piano_buddy run --mode box`` (mock pins, as on a machine without GPIO)
plays into a JACK dummy server through real alsa-lib, with ``NOTIFY_SOCKET`` pointing at a
datagram socket of ours, as systemd would. Start to READY is from ``Popen`` to the
``READY=1`` datagram; idle CPU is the process's utime+stime over an idle stretch (JACK runs
in its own process and is not counted); memory is VmRSS after that stretch.

The firmware names its threads (pb-audio, pb-conductor, pb-supervisor; threads an ALSA
plugin starts while the device opens are pb-alsa-plugin), so the idle figure counts the
firmware's own threads; the JACK client thread and JACK's shared buffers belong to the test
device and are reported beside it.
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


def _memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and its shared-memory part (RssShmem) in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "RssShmem"):
            out[key] = int(line.split()[1]) / 1024
    return out


def _thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (the firmware names its own threads pb-*)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[comm] = out.get(comm, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


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
            c0, t0s, w0 = _cpu_seconds(proc.pid), _thread_cpu(proc.pid), time.monotonic()
            time.sleep(idle)
            wall = time.monotonic() - w0
            cpu = (_cpu_seconds(proc.pid) - c0) / wall * 100
            t1s = _thread_cpu(proc.pid)
            own = sum(t1s[n] - t0s.get(n, 0.0) for n in t1s
                      if n.startswith("pb-") and n != "pb-alsa-plugin") / wall * 100
            mem = _memory_mb(proc.pid)
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
        Figure("firmware", "idle CPU, firmware's threads", own, "%", 3.0,
               note=f"{idle:.0f} s idle, 128-frame periods; threads pb-audio, pb-conductor, "
                    "pb-supervisor"),
        Figure("firmware", "idle CPU, whole process", cpu, "%",
               note="adds pb-alsa-plugin: the JACK client thread of the test device"),
        Figure("firmware", "resident memory without shared memory", mem["VmRSS"]
               - mem.get("RssShmem", 0.0), "MB", 80.0, note="VmRSS - RssShmem"),
        Figure("firmware", "resident memory (VmRSS)", mem["VmRSS"], "MB",
               note=f"includes {mem.get('RssShmem', 0):.0f} MB of JACK's shared buffers "
                    "mapped by the test device"),
        Figure("firmware", "SIGTERM -> exit", stop_s, "s", 1.0, note=f"exit code {code}"),
    ]
