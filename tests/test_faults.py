"""Fault injection on the whole firmware: each fault is survived, or reported and restarted.

Audio faults use a JACK dummy server (stop it = the device vanishes); model and config
faults run the real command in a child process and check its exit code and message.
"""

import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from piano_buddy.app import Box
from piano_buddy.config import Config
from piano_buddy.conductor import Turn
from piano_buddy.notify import Notifier
from piano_buddy.panel import mock_factory

from rig import quiet_config, wait_for

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models_tflite"


def run_cli(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "piano_buddy", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL)


def test_audio_device_vanishes_mid_phrase_and_returns(jack_server):
    factory = mock_factory()
    box = Box(quiet_config(retry_seconds=0.5), pin_factory=factory, seed=5)
    box.start()
    pins = [factory.pin(p) for p in box.cfg.panel.buttons]
    try:
        assert wait_for(lambda: box.audio.device_ok, 10)
        pins[2].drive_low()
        time.sleep(0.1)
        jack_server.stop()                              # mid-phrase: a key is held
        assert wait_for(lambda: "audio" in box.conductor.faults, 10)
        pins[2].drive_high()
        pins[4].drive_low()
        time.sleep(0.1)
        pins[4].drive_high()
        # the box keeps time without its device: the phrase ends and the AI still answers
        assert wait_for(lambda: box.conductor.turn is Turn.AI, 5)
        jack_server.start()
        assert wait_for(lambda: "audio" not in box.conductor.faults, 20)
        assert box.audio.device_ok and box.audio.is_alive()
        assert box.healthy()
    finally:
        box.close()
    assert not box.synth.sounding()


def test_a_writer_stall_causes_an_xrun_that_is_survived(jack_server):
    box = Box(quiet_config(), pin_factory=mock_factory(), seed=6)
    box.start()
    try:
        assert wait_for(lambda: box.audio.device_ok, 10)
        real_render = box.synth.render
        stalled = threading.Event()

        def slow_render():
            if not stalled.is_set():
                stalled.set()
                time.sleep(0.5)          # the writer misses its deadline: an underrun
            return real_render()
        box.synth.render = slow_render
        assert wait_for(lambda: box.audio.xruns >= 1, 10)
        frames = box.audio.frames_written
        assert wait_for(lambda: box.audio.frames_written > frames + 48000 // 4, 5)
        assert box.healthy()
    finally:
        box.close()


def test_a_hung_audio_thread_stops_the_watchdog_pings(jack_server, tmp_path):
    """A real datagram socket stands in for systemd: pings come while both threads beat and
    stop once the audio thread hangs, so systemd's WatchdogSec restarts the service."""
    import socket
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    box = Box(quiet_config(), pin_factory=mock_factory(), seed=7)
    box.start()
    stop = threading.Event()
    supervisor = threading.Thread(target=box.supervise, args=(stop, notifier), daemon=True)
    hang = threading.Event()
    try:
        supervisor.start()
        got = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and got.count("WATCHDOG=1") < 3:
            try:
                got.append(sock.recv(256).decode())
            except socket.timeout:
                pass
        assert got[0].startswith("READY=1") and got.count("WATCHDOG=1") >= 3
        real_render = box.synth.render
        box.synth.render = lambda: (hang.wait(), real_render())[1]
        time.sleep(2.5)                       # the heartbeat goes stale
        while True:                           # drain pings sent before it went stale
            try:
                sock.recv(256)
            except socket.timeout:
                break
        late = []
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            try:
                late.append(sock.recv(256).decode())
            except socket.timeout:
                pass
        assert "WATCHDOG=1" not in late
        assert not box.healthy()
    finally:
        stop.set()
        hang.set()
        supervisor.join(2)
        box.close()
        sock.close()


@pytest.mark.parametrize("damage, words", [
    ("truncate", ["genie.tflite", "corrupt or truncated"]),
    ("garbage", ["genie.tflite", "not a TFLite model"]),
    ("missing", ["genie.tflite", "missing"]),
])
def test_a_broken_model_file_stops_with_a_clear_message_and_exit_3(tmp_path, damage, words):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("genie.tflite", "genie_encoder.tflite", "melody.tflite"):
        (models / name).write_bytes((MODELS / name).read_bytes())
    genie = models / "genie.tflite"
    if damage == "truncate":
        genie.write_bytes(genie.read_bytes()[:len(genie.read_bytes()) // 3])
    elif damage == "garbage":
        genie.write_bytes(os.urandom(5000))
    else:
        genie.unlink()
    conf = tmp_path / "c.toml"
    conf.write_text(f'[models]\ndirectory = "{models}"\n[midi]\nenabled = false\n'
                    '[recording]\nenabled = false\n')
    r = run_cli("--config", str(conf), "run", "--mode", "box",
                env={"PIANO_BUDDY_LOG": "WARNING"})
    assert r.returncode == 3, r.stderr
    for w in words:
        assert w in r.stderr


def test_an_invalid_config_stops_with_exit_2_naming_the_key(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text("[turns]\npause = 'soon'\n")
    r = run_cli("--config", str(conf), "run", "--mode", "box")
    assert r.returncode == 2
    assert "turns.pause" in r.stderr and "'soon'" in r.stderr


def test_a_broken_model_shows_the_error_pattern_before_the_exit(tmp_path, monkeypatch):
    from piano_buddy import app
    from piano_buddy.errors import ModelError
    monkeypatch.setattr(app, "MODEL_ERROR_SHOW_SECONDS", 0.0)
    (tmp_path / "genie.tflite").write_bytes(b"\0" * 100)
    cfg = dataclasses.replace(quiet_config(), models=dataclasses.replace(
        Config().models, directory=str(tmp_path)))
    factory = mock_factory()
    box = Box(cfg, pin_factory=factory)
    with pytest.raises(ModelError, match="genie.tflite"):
        box.start()
    time.sleep(0.5)
    assert box.panel.error
    flicker = factory.pin(cfg.panel.turn_led).states
    assert len(flicker) >= 4, "the turn LED flickers (on/off edges in the pin's history)"
    box.close()


def test_a_notify_socket_nobody_reads_never_blocks_the_supervisor(tmp_path):
    """systemd busy (its datagram queue full): pings are dropped, the main thread goes on."""
    import socket
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)                      # bound, never read
    notifier = Notifier({"NOTIFY_SOCKET": path})
    t0 = time.monotonic()
    results = [notifier.watchdog() for _ in range(500)]
    assert time.monotonic() - t0 < 2.0
    assert results[0] and not results[-1]
    sock.close()
