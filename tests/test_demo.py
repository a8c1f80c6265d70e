"""`make run` without a terminal plays the built-in demo and writes the duet files."""

import subprocess
import sys
import wave

import mido
import numpy as np
import pytest


def test_run_without_a_terminal_plays_the_demo_and_writes_the_duet(tmp_path, alsa_capture):
    r = subprocess.run([sys.executable, "-m", "piano_buddy", "run"], cwd=tmp_path,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
                       env=alsa_capture.env())
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "out"
    with wave.open(str(out / "duet.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (48000, 2, 2)
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    assert audio.shape[0] > 48000 * 5 and np.abs(audio).max() > 1000
    mid = mido.MidiFile(out / "duet.mid")
    tracks = {t.name: [m for m in t if m.type == "note_on" and m.velocity] for t in mid.tracks}
    assert len(tracks["Player"]) >= 10 and len(tracks["AI"]) >= 4
    assert {m.channel for m in tracks["Player"]} == {0} and {m.channel for m in tracks["AI"]} == {1}
    assert (out / "duet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "player notes" in r.stdout and "AI notes" in r.stdout
    played = alsa_capture.samples()           # the demo also played through ALSA
    n = (len(audio) // 128) * 128
    assert np.array_equal(played[:n], audio[:n])


def test_the_demo_is_deterministic(tmp_path):
    for d in ("a", "b"):
        subprocess.run([sys.executable, "-m", "piano_buddy", "demo", "--no-play", "--out",
                        str(tmp_path / d)], check=True, capture_output=True, timeout=300)
    assert (tmp_path / "a" / "duet.wav").read_bytes() == (tmp_path / "b" / "duet.wav").read_bytes()
    assert (tmp_path / "a" / "duet.mid").read_bytes() == (tmp_path / "b" / "duet.mid").read_bytes()


def test_the_harmony_demo_shows_the_accompaniment_in_a_third_colour(tmp_path):
    """`piano-buddy demo --harmony`: the same duet with the AI accompanying; the piano roll
    has the accompaniment in green, under the melody it belongs to."""
    from piano_buddy.config import Config, from_dict
    from piano_buddy.demo import HARMONY, piano_roll_figure, render_duet

    r = subprocess.run([sys.executable, "-m", "piano_buddy", "demo", "--harmony", "--no-play",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "duet-harmony.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accompaniment notes" in r.stdout
    _samples, notes, stats = render_duet(from_dict({"harmony": {"enabled": True}}))
    harmony = [n for n in notes.notes if n[4] == HARMONY]
    melody = [n for n in notes.notes if n[4] != HARMONY]
    assert len(harmony) >= 10 and all(e > s for _p, _v, s, e, _w in harmony)
    for p, _v, s, e, _w in harmony:              # under the melody sounding with it
        above = [m[0] for m in melody if m[2] <= s < m[3]]
        assert not above or p < max(above), (p, above)
    fig = piano_roll_figure(notes.notes)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "AI accompaniment (harmony)" in labels
    _s, plain, _st = render_duet(Config())
    assert not [n for n in plain.notes if n[4] == HARMONY]


@pytest.mark.slow
def test_the_demo_plays_one_duet_per_style(tmp_path):
    """`piano-buddy demo --styles`: the same scripted player, answered once in each melody
    style (and by "auto"), into duet-<style>.*; the styles answer differently."""
    from piano_buddy.styles import STYLE_ORDER

    r = subprocess.run([sys.executable, "-m", "piano_buddy", "demo", "--styles", "--no-play",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ai = {}
    for style in STYLE_ORDER:
        for ext in (".wav", ".mid", ".png"):
            assert (tmp_path / f"duet-{style}{ext}").stat().st_size > 0
        mid = mido.MidiFile(tmp_path / f"duet-{style}.mid")
        ai[style] = tuple(m.note for t in mid.tracks if t.name == "AI"
                          for m in t if m.type == "note_on" and m.velocity)
        assert len(ai[style]) >= 4
        answered = "auto: " if style == "auto" else style
        assert f"Piano Buddy demo (duet-{style})" in r.stdout and f"({answered}" in r.stdout
    assert len({ai[s] for s in STYLE_ORDER if s != "auto"}) == len(STYLE_ORDER) - 1
