"""`piano-buddy selftest`: every check reported, a tone per button heard, failures named."""

import numpy as np

from piano_buddy.config import Config
from piano_buddy.panel import mock_factory
from piano_buddy.selftest import SCALE, run_selftest

try:
    from tests.audio_rig import dominant_frequency
except ImportError:
    from audio_rig import dominant_frequency


def test_selftest_passes_lights_each_led_and_plays_a_tone_per_button(alsa_capture):
    lines = []
    factory = mock_factory()
    cfg = Config()
    assert run_selftest(cfg, pin_factory=factory, out=lines.append) == 0
    text = "\n".join(lines)
    for check in ("pins", "genie model", "melody model", "audio device", "tones"):
        assert f"[ok] {check}" in text
    assert "5 passed, 0 failed" in text
    for led in cfg.panel.button_leds:                 # each LED went on and off
        assert [s.state for s in factory.pin(led).states][-2:] == [True, False]
    audio = alsa_capture.samples()[:, 0].astype(float)
    tone = len(audio) // len(SCALE)
    heard = [dominant_frequency(audio[i * tone + 2000: i * tone + 2000 + 8192], 48000)
             for i in range(len(SCALE))]
    expected = [440 * 2 ** ((p - 69) / 12) for p in SCALE]
    assert np.allclose(heard, expected, rtol=0.01), heard


def test_selftest_names_what_failed(alsa_capture, tmp_path):
    import dataclasses
    alsa_capture.unplug()
    cfg = Config()
    cfg = dataclasses.replace(cfg, models=dataclasses.replace(cfg.models,
                                                              directory=str(tmp_path)))
    lines = []
    assert run_selftest(cfg, pin_factory=mock_factory(), out=lines.append) == 1
    text = "\n".join(lines)
    assert "[FAIL] genie model" in text and "genie.tflite" in text
    assert "[FAIL] audio device" in text
    assert "failed (genie model, melody model, audio device)" in text
