"""sd_notify through a real unix datagram socket, as systemd's manager receives it.

The last test runs a child process shaped like the firmware's supervisor (an audio thread and
a conductor thread with heartbeats, a main loop that ticks the watchdog) and hangs its audio
thread: the WATCHDOG=1 pings must stop while the supervisor itself keeps running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from piano_buddy.notify import HeartbeatCheck, Notifier, Watchdog


@pytest.fixture
def manager(tmp_path):
    """A bound datagram socket standing in for systemd; yields (socket, NOTIFY_SOCKET value)."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    yield sock, str(path)
    sock.close()


def receive(sock, timeout=2.0) -> dict[str, str]:
    sock.settimeout(timeout)
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_ready_status_watchdog_stopping_arrive_as_key_value_lines(manager):
    sock, address = manager
    with Notifier({"NOTIFY_SOCKET": address}) as n:
        assert n.enabled
        assert n.ready("models loaded, audio open")
        assert receive(sock) == {"READY": "1", "STATUS": "models loaded, audio open"}
        assert n.ready()
        assert receive(sock) == {"READY": "1"}
        n.watchdog()
        assert receive(sock) == {"WATCHDOG": "1"}
        n.status("two\nlines")
        assert receive(sock) == {"STATUS": "two lines"}
        n.stopping()
        assert receive(sock) == {"STOPPING": "1"}


def test_abstract_namespace_socket():
    name = f"piano-buddy-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        with Notifier({"NOTIFY_SOCKET": "@" + name}) as n:
            assert n.ready()
            assert receive(sock) == {"READY": "1"}
    finally:
        sock.close()


def test_without_notify_socket_every_call_is_a_no_op():
    n = Notifier({})
    assert not n.enabled
    assert n.ready("x") is False
    assert n.watchdog() is False
    assert n.status("x") is False
    assert n.stopping() is False
    assert n.watchdog_interval() is None
    n.close()
    n.close()


def test_reads_the_real_environment_by_default(manager, monkeypatch):
    sock, address = manager
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    with Notifier() as n:
        n.watchdog()
    assert receive(sock) == {"WATCHDOG": "1"}


def test_a_vanished_manager_does_not_raise(tmp_path):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.enabled
    assert n.watchdog() is False
    assert isinstance(n.last_error, FileNotFoundError)
    n.close()


def test_watchdog_interval_is_half_of_watchdog_usec_and_honours_watchdog_pid():
    me = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "10000000"}).watchdog_interval() == 5.0
    assert Notifier({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": me}).watchdog_interval() == 5.0
    assert Notifier({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}).watchdog_interval() is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval() is None
    assert Notifier({"WATCHDOG_USEC": "soon"}).watchdog_interval() is None
    assert Notifier({}).watchdog_interval() is None


def test_watchdog_pings_only_when_every_check_passes(manager):
    sock, address = manager
    audio_frames = [0]
    turns = [0]
    audio = HeartbeatCheck(lambda: audio_frames[0], "audio")
    conductor = HeartbeatCheck(lambda: turns[0], "conductor")
    with Notifier({"NOTIFY_SOCKET": address}) as n:
        dog = Watchdog(n, [audio, conductor])

        audio_frames[0] += 256
        turns[0] += 1
        assert dog.tick()
        assert receive(sock) == {"WATCHDOG": "1"}

        turns[0] += 1                      # audio stalled
        assert not dog.tick()
        assert dog.failed == ["audio"]

        audio_frames[0] += 256             # conductor stalled
        assert not dog.tick()
        assert dog.failed == ["conductor"]

        audio_frames[0] += 256
        turns[0] += 1
        assert dog.tick()
        assert receive(sock) == {"WATCHDOG": "1"}
        with pytest.raises(TimeoutError):  # the two withheld ticks sent nothing
            receive(sock, timeout=0.2)
    assert dog.pings == 2


def test_a_check_that_raises_withholds_the_ping_instead_of_crashing(manager):
    sock, address = manager

    def broken() -> bool:
        raise RuntimeError("audio object gone")

    with Notifier({"NOTIFY_SOCKET": address}) as n:
        dog = Watchdog(n, [lambda: True, broken])
        assert dog.tick() is False
        assert dog.failed == ["broken"]
        with pytest.raises(TimeoutError):
            receive(sock, timeout=0.2)


SUPERVISED_CHILD = textwrap.dedent("""
    import sys, threading, time
    from piano_buddy.notify import HeartbeatCheck, Notifier, Watchdog

    notifier = Notifier()
    interval = notifier.watchdog_interval()
    assert interval is not None, "WATCHDOG_USEC not passed"
    frames = 0
    turns = 0
    hang = threading.Event()
    stop = threading.Event()

    def audio():
        global frames
        while not stop.is_set():
            if hang.is_set():
                threading.Event().wait()   # a hung ALSA write: never returns
            frames += 256
            time.sleep(0.005)

    def conductor():
        global turns
        while not stop.wait(0.01):
            turns += 1

    for target in (audio, conductor):
        threading.Thread(target=target, daemon=True).start()
    time.sleep(0.05)
    notifier.ready("models loaded, audio open")
    dog = Watchdog(notifier, [HeartbeatCheck(lambda: frames, "audio"),
                              HeartbeatCheck(lambda: turns, "conductor")])

    def read_commands():
        for line in sys.stdin:
            if line.strip() == "hang":
                hang.set()
    threading.Thread(target=read_commands, daemon=True).start()

    while not stop.wait(interval):
        if not dog.tick():
            notifier.status("watchdog withheld: " + ",".join(dog.failed) + " stalled")
""")


def test_a_hung_audio_thread_stops_the_pings_of_a_real_child_process(manager, tmp_path):
    sock, address = manager
    script = tmp_path / "child.py"
    script.write_text(SUPERVISED_CHILD)
    env = dict(os.environ, NOTIFY_SOCKET=address, WATCHDOG_USEC="200000")  # ping every 0.1 s
    env.pop("WATCHDOG_PID", None)
    child = subprocess.Popen([sys.executable, str(script)], env=env, stdin=subprocess.PIPE, text=True)
    try:
        assert receive(sock, timeout=20.0) == {"READY": "1", "STATUS": "models loaded, audio open"}
        pings = 0
        deadline = time.monotonic() + 3.0
        while pings < 5 and time.monotonic() < deadline:
            assert receive(sock) == {"WATCHDOG": "1"}
            pings += 1
        assert pings == 5, "a healthy child pings every 0.1 s"

        child.stdin.write("hang\n")
        child.stdin.flush()
        # One ping may still be in flight (the audio thread advanced just before it hung);
        # after that the supervisor keeps running, says why, and never pings again.
        after = []
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            try:
                after.append(receive(sock, timeout=0.3))
            except TimeoutError:
                continue
        first_complaint = next(i for i, m in enumerate(after) if "STATUS" in m)
        assert all(m == {"WATCHDOG": "1"} for m in after[:first_complaint])
        assert first_complaint <= 2
        later = after[first_complaint:]
        assert len(later) >= 8, "the supervisor still ticks every 0.1 s"
        assert all(m == {"STATUS": "watchdog withheld: audio stalled"} for m in later)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait(timeout=10)
