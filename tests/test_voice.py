"""The voice sounds like a piano: issue 11's targets, measured on the offline renderer (what
the box plays) with the same measures as ``make voice-report`` (``bench.voice_measures``).

The targets that compare with the sampled reference (FluidR3 in FluidSynth) are in
``test_voice_reference.py``; these need only numpy.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import voice_measures as vm
from bench.voice_render import SR, render_ours
from bench.voice_report import mash_gains
from piano_buddy.synth import Synth, render_offline

try:
    from tests.render_memory import render_memory
except ImportError:
    from render_memory import render_memory

C2, C4, C6 = 36, 60, 84


def held(pitch: int, velocity: int = 80, seconds: float = 12.0) -> np.ndarray:
    return vm.trim_onset(render_ours([(pitch, velocity, 0.0, seconds)], seconds + 0.5))


@pytest.fixture(scope="module")
def held_notes():
    return {p: held(p) for p in (C2, C4, C6)}


@pytest.mark.parametrize("pitch", [C2, C4, C6])
def test_a_held_note_decays_in_two_stages_towards_silence(held_notes, pitch):
    x = held_notes[pitch]
    early, late = vm.decay_slopes(x, SR)
    assert early <= 2 * late < 0, f"early {early:.1f} dB/s, late {late:.1f} dB/s"
    assert vm.level_at_db(x, SR, 11.5) < -40, "no sustain floor: a held note dies away"


@pytest.mark.parametrize("pitch", [C2, C4, C6])
def test_partials_beat_like_unison_strings(held_notes, pitch):
    assert vm.irregularity_db(held_notes[pitch], SR, pitch) >= 0.8


def test_inharmonicity_grows_with_the_partial_number(held_notes):
    x = held_notes[C4]
    c4, c8, c16 = (vm.inharmonicity_cents(x, SR, C4, n) for n in (4, 8, 16))
    assert 0 < c4 < c8 < c16, (c4, c8, c16)
    assert c16 > 2 * c8


@pytest.mark.parametrize("pitch", [21, 28, 33, 36, 40, 43, 45, 48, 50])
def test_bass_energy_sits_in_partials_2_to_20(pitch):
    """At least two thirds of a bass note's partial energy lies in partials 2-20, not in
    a fundamental that a small speaker cannot play: A0 to D3 (147 Hz)."""
    x = held(pitch, seconds=1.0)
    _, amps = vm.partials(x, SR, pitch, t=0.3, n_max=20)
    power = 10 ** (amps[np.isfinite(amps)] / 10)
    assert power[1:].sum() > 2 * power[0], (f"{pitch}: the fundamental has "
                                            f"{power[0] / power.sum():.0%} of the energy")


@pytest.mark.parametrize("pitch", [21, 28, 36, 43, 48, 55, 66, 69, 72, 79, 84])
def test_every_register_is_within_4_db_of_c4_a_weighted(pitch):
    level = vm.a_weighted_db(held(pitch, seconds=0.6), SR)
    ref = vm.a_weighted_db(held(C4, seconds=0.6), SR)
    assert abs(level - ref) <= 4.0, f"{pitch}: {level - ref:+.1f} dB re C4"


@pytest.mark.parametrize("pitch", [21, 36, 48, 60, 69, 72, 84, 96])
def test_the_release_dies_in_0_2_to_0_4_s(pitch):
    x = vm.trim_onset(render_ours([(pitch, 80, 0.0, 0.5)], 2.0))
    r60 = vm.release_r60(x, SR, 0.5)
    assert 0.2 <= r60 <= 0.4, f"{pitch}: R60 {r60:.2f} s"


def test_a_hard_16_note_chord_decays_like_a_piano_not_held_up_by_the_limiter():
    chord = [(p, 127, 0.0, 3.0) for p in range(36, 36 + 16 * 3, 3)]
    x = vm.trim_onset(render_ours(chord, 3.5))
    assert vm.fall_db(x, SR, 0.2, 2.9) >= 12.0


def test_a_melody_at_velocity_100_peaks_between_minus_9_and_minus_6_dbfs():
    melody = (60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79, 81, 83, 84)
    y = render_offline([(p, 100, 0.3 * i, 0.3 * i + 0.28) for i, p in enumerate(melody)],
                       reverb=True)
    assert -9.0 <= vm.peak_dbfs(y) <= -6.0


@pytest.mark.parametrize("block_frames", [64, 128])
def test_a_mash_is_compressed_smoothly_and_never_passes_the_ceiling(block_frames):
    """A child hammering (``mash_gains``: v127 every 100 ms on random keys, 16 voices, the
    room on). From the very first strike, the compressor's gain moves by at most 1 dB from one
    strike to the next; the mash is loud enough to be compressed, the limiter has little
    left to do once it is under way, and the output never exceeds the ceiling."""
    comp, limiter, peak = mash_gains(block_frames)
    assert peak <= 32767 * 10 ** (-6 / 20)
    steps = np.abs(np.diff(comp))
    assert steps.max() <= 1.0, f"the compressor moved {steps.max():.2f} dB in one strike"
    assert min(comp) < -3.0, "the mash was loud enough to be compressed"
    assert min(limiter[10:]) > -1.5, f"the limiter still ducks {min(limiter[10:]):.1f} dB"


def test_a_dense_chord_is_compressed_smoothly_and_never_passes_the_ceiling():
    """16 keys struck at once at v127: the compressor comes down by over 6 dB within 0.1 s,
    in one smooth, monotone glide (under 1 dB per 1.3 ms block, never back up while the
    chord is loud), and the output never exceeds the ceiling."""
    synth = Synth(voices=16, reverb=True, block_frames=64)
    for p in range(36, 36 + 16 * 3, 3):
        synth.note_on(p, 127)
    comp, peak = [0.0], 0
    for _ in range(int(0.3 * SR) // 64):
        peak = max(peak, int(np.max(np.abs(synth.render().astype(np.int32)))))
        comp.append(synth.output.comp_gain_db)
    assert peak <= 32767 * 10 ** (-6 / 20)
    steps = np.diff(comp)
    assert np.abs(steps).max() < 1.0 and steps.max() <= 0.0, "one smooth glide down"
    assert comp[int(0.1 * SR) // 64] < -6.0, "the chord is compressed within 0.1 s"


def test_harder_strikes_are_louder_and_brighter_like_a_piano():
    def measure(v):
        x = held(C4, v, 1.0)
        return vm.a_weighted_db(x, SR), vm.centroid_hz(x, SR, 0.05)
    (l40, c40), (l80, c80), (l120, c120) = measure(40), measure(80), measure(120)
    assert -26 <= l40 - l120 <= -14 and -11 <= l80 - l120 <= -4, (l40 - l120, l80 - l120)
    assert c40 < c80 < c120 and c120 > 1.3 * c40, (c40, c80, c120)


def test_the_strike_is_a_burst_of_noise_over_by_the_time_the_note_rings():
    x = held(C4, 100, 1.0)
    assert vm.off_partial_db(x, SR, C4) > -20, "a hammer is heard in the first 30 ms"
    assert vm.off_partial_db(x[int(0.3 * SR):], SR, C4) < -30, "and it is gone by 0.3 s"


def test_the_pitch_stays_within_3_cents_while_the_note_rings():
    """The slow (late) components are detuned a little from the fast ones, for the beating;
    the fundamental still stays within 3 cents of equal temperament late in the note."""
    from piano_buddy.synth.timbre import pitch_hz
    for pitch in (33, 45, 60, 72, 84):
        x = held(pitch, 100, 4.0)[int(2.0 * SR):int(4.0 * SR)]
        freqs, _ = vm.partials(np.concatenate([np.zeros(int(0.3 * SR)), x]), SR, pitch, t=1.3, n_max=1)
        cents = 1200 * np.log2(freqs[0] / float(pitch_hz(pitch)))
        assert abs(cents) < 3.0, f"{pitch}: {cents:+.2f} cents"


# ---- the room --------------------------------------------------------------------------------
def test_the_reverb_adds_a_mono_compatible_room_and_can_be_turned_off():
    notes = [(60, 100, 0.0, 0.3)]
    dry = render_offline(notes, reverb=False).astype(np.float64)
    wet = render_offline(notes, reverb=True, reverb_amount=0.5).astype(np.float64)
    n = len(dry)
    room = wet[:n] - dry
    assert np.sqrt(np.mean(room ** 2)) > 0.05 * np.sqrt(np.mean(dry ** 2)), "the room is heard"
    # mono: L + R keeps the room's energy (no cancellation between channels)
    mono, stereo = np.sum((room[:, 0] + room[:, 1]) ** 2), np.sum(room ** 2)
    assert mono >= 1.0 * stereo, "the room's channels do not cancel in mono"
    # after the note-off the room rings on a little, then stops: exact silence
    assert len(wet) > len(dry)
    assert not np.any(wet[-1024:])
    off = Synth(reverb=True, reverb_amount=0.0)
    plain = Synth(reverb=False)
    for s in (off, plain):
        s.note_on(60, 100)
    assert np.array_equal(off.render(), plain.render()), "amount 0 is no room at all"


def test_an_idle_synth_with_the_room_is_exactly_silent():
    synth = Synth(reverb=True)
    synth.note_on(48, 127)
    for _ in range(100):
        synth.render()
    synth.note_off(48)
    for _ in range(int(1.5 * SR) // synth.block_frames):
        synth.render()
    assert synth.is_silent()
    assert not np.any(synth.render())


def test_render_with_the_room_allocates_nothing():
    synth = Synth(block_frames=2048, voices=16, reverb=True)
    for i in range(16):
        synth.note_on(30 + 4 * i, 100)
    for _ in range(5):
        synth.render()
    peak, grown, kept = render_memory(lambda: [synth.render() for _ in range(20)])
    assert peak < 6144, f"render allocated {peak} bytes at its peak"
    assert kept < 1024, f"render kept {kept} bytes (the process: {grown})"


def test_the_config_keys_for_the_room_are_the_synth_s_own():
    """audio.reverb and audio.reverb_amount are passed to Synth as its keyword arguments."""
    import inspect
    from piano_buddy.config import AudioConfig
    params = inspect.signature(Synth).parameters
    audio = AudioConfig()
    for key in ("reverb", "reverb_amount"):
        assert key in params
        Synth(**{key: getattr(audio, key)})
    assert audio.reverb is True and 0 < audio.reverb_amount <= 1
