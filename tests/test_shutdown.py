"""Stopping the box: notes silenced first, the recording saved whatever else fails, every
wait bounded so the whole stop fits well inside systemd's TimeoutStopSec."""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import pytest

from piano_buddy import app, midi_fake
from piano_buddy.app import Box
from piano_buddy.conductor import Turn
from piano_buddy.panel import mock_factory
from piano_buddy.recorder import list_recordings

from rig import quiet_config, wait_for


pytestmark = pytest.mark.usefixtures("fake_midi_ports")


def box_with_everything(tmp_path) -> Box:
    cfg = quiet_config()
    cfg = dataclasses.replace(
        cfg, midi=dataclasses.replace(cfg.midi, enabled=True),
        recording=dataclasses.replace(cfg.recording, enabled=True, folder=str(tmp_path)))
    return Box(cfg, pin_factory=mock_factory(), seed=2)


def play_and_wait_for_the_ai(box: Box) -> None:
    kb = midi_fake.keyboard("USB Piano")
    box.midi_in.scan()
    for pitch in (60, 64, 67, 72):
        kb.send([0x90, pitch, 90])
        kb.send([0x80, pitch, 0])
    assert wait_for(lambda: box.conductor.turn is Turn.AI, 20)


def test_the_stop_budget_fits_the_unit():
    assert app.STOP_BUDGET <= 5.0


def test_a_stop_with_every_part_stuck_still_fits_the_budget(tmp_path, monkeypatch):
    """Defect: the MIDI watcher's join could take 12 s and the recorder's 20 s, and then
    systemd's SIGKILL skipped all-notes-off on MIDI out."""
    box = box_with_everything(tmp_path)
    box.start()
    play_and_wait_for_the_ai(box)
    release = threading.Event()
    real_fsync = os.fsync

    def slow_disk(fd):                      # the recorder's writer hangs on the SD card
        release.wait(30)
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", slow_disk)
    real_scan = box.midi_in.scan

    def stuck_scan():                       # the MIDI watcher hangs in the MIDI system
        release.wait(30)
        return real_scan()
    monkeypatch.setattr(box.midi_in, "scan", stuck_scan)
    time.sleep(0.3)                         # the watcher enters its stuck scan
    t0 = time.monotonic()
    try:
        box.close()
        took = time.monotonic() - t0
    finally:
        release.set()
    assert took <= app.STOP_BUDGET + 0.5, took
    sent = midi_fake.sent_to("Piano Buddy")
    assert [0xB0, 123, 0] in sent and [0xB1, 123, 0] in sent, "all notes off on MIDI out"
    assert not box.synth.sounding()


def test_the_recording_is_saved_whatever_another_part_raises(tmp_path, monkeypatch):
    """Defect: a crash while closing MIDI input came before the recorder closed, and the
    last session's file was lost."""
    box = box_with_everything(tmp_path)
    box.start()
    play_and_wait_for_the_ai(box)

    def broken():
        raise RuntimeError("a part that fails at shutdown")
    for part in (box.midi_in, box.midi_out, box.panel, box.audio):
        for name in ("close", "stop", "all_off"):
            if hasattr(part, name):
                monkeypatch.setattr(part, name, broken)
    box.close()
    (rec,) = list_recordings(tmp_path)
    assert rec.n_player_notes == 4
    monkeypatch.undo()                  # now really stop what the broken closes left running
    box.audio.stop()
    box.audio.join(5)
    for part in (box.panel, box.midi_in, box.midi_out):
        part.close()


@pytest.mark.jack
@pytest.mark.slow
def test_a_jack_restart_with_midi_on_then_a_stop_keeps_the_recording(jack_server, tmp_path):
    """Defect: a JACK server killed and restarted (the desktop path) crashed the firmware in
    Box.close() while it closed MIDI input, before the recorder closed (the session was lost);
    MIDI out never came back."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("scenarios") / "jack_restart_then_stop.py"
    env = jack_server.env()
    env["PIANO_BUDDY_MIDI"] = "tests.midi_jack"    # the rig's JACK port module
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "rec")], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "PLAYED"
        jack_server.stop()
        time.sleep(3)                    # the watchers notice the server is gone
        jack_server.start()
        proc.stdin.write("restarted\n")
        proc.stdin.flush()
        reopened = proc.stdout.readline().strip()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "CLOSED" in out
    assert reopened == "REOPENED True", err[-3000:]
    (rec,) = list_recordings(tmp_path / "rec")
    assert rec.n_player_notes == 3
