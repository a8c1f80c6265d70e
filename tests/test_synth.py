"""The synth's sound: pitch, aliasing, clicks, ceiling, determinism, release, timing.

Every check measures rendered samples (numpy FFTs and sample steps), never internals, so a
test fails when the sound is wrong, whatever the code looks like.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.voice_measures import steady_tone
from piano_buddy.synth import AI, PLAYER, Synth, render_offline, write_wav
from piano_buddy.synth.timbre import STRIKE_ROW, pitch_hz

try:
    from tests.render_memory import render_memory
except ImportError:
    from render_memory import render_memory

SR = 48000


# ---- measuring helpers ----------------------------------------------------------------------
def render_held(pitch: int, velocity: int = 100, seconds: float = 1.0, **kwargs) -> np.ndarray:
    """A note held for ``seconds``; returns float (frames,) mono in int16 units."""
    synth = Synth(**kwargs)
    synth.note_on(pitch, velocity)
    blocks = [synth.render().astype(np.float64).mean(axis=1)
              for _ in range(int(seconds * SR / synth.block_frames))]
    return np.concatenate(blocks)


def peak_frequency(x: np.ndarray, near_hz: float, cents_window: float = 50.0) -> float:
    """The spectral peak within +-cents_window of near_hz: Hann window, 4x zero padding,
    parabolic fit on the log magnitude (under 0.35 cents of error on tones like these)."""
    x = x - x.mean()
    n = len(x)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(n), 4 * n))
    freqs = np.fft.rfftfreq(4 * n, 1.0 / SR)
    band = np.flatnonzero((freqs > near_hz * 2 ** (-cents_window / 1200))
                          & (freqs < near_hz * 2 ** (cents_window / 1200)))
    k = band[np.argmax(spectrum[band])]
    a, b, c = np.log(spectrum[k - 1:k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / (4 * n)


def cents(f: float, ref: float) -> float:
    return 1200.0 * math.log2(f / ref)


def non_partial_energy_db(x: np.ndarray, partials_hz: np.ndarray, halfwidth_hz: float = 10.0):
    """Energy outside +-halfwidth of the expected partials, relative to all energy (dB).
    A 4-term Blackman-Harris window keeps leakage under -92 dB."""
    n = len(x)
    w = _blackman_harris(n)
    power = np.abs(np.fft.rfft(x * w)) ** 2     # no mean removal: it would add a DC step
    freqs = np.fft.rfftfreq(n, 1.0 / SR)
    near = np.zeros(len(freqs), dtype=bool)
    for f in partials_hz:
        near |= np.abs(freqs - f) <= halfwidth_hz
    return 10 * math.log10(power[~near].sum() / power.sum())


def _blackman_harris(n: int) -> np.ndarray:
    t = 2 * np.pi * np.arange(n) / n
    return 0.35875 - 0.48829 * np.cos(t) + 0.14128 * np.cos(2 * t) - 0.01168 * np.cos(3 * t)


def max_step(x: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(x)))) if len(x) > 1 else 0.0


def render_frames(synth: Synth, frames: int) -> np.ndarray:
    """Render whole blocks until at least ``frames`` more frames; int16 (frames, channels)."""
    out = []
    total = 0
    while total < frames:
        out.append(synth.render().copy())
        total += synth.block_frames
    return np.concatenate(out)


def sustain(synth: Synth) -> Synth:
    """The aliasing checks below were written for a sustained voice; they now measure the
    tables and the interpolation on a held copy of the same note (see steady_tone)."""
    return steady_tone(synth)


def without_strike(synth: Synth) -> Synth:
    """The same synth with the hammer's knock muted. The click checks below compare a note's
    steps with its own steepest held step: the knock is broadband noise by design (its own
    onset is checked in test_the_hammer_knock_builds_up_from_silence), so they check the
    envelope path - attack, release, steal fade - on the partials alone."""
    import dataclasses
    gain = synth.bank.row_gain.copy()
    gain[:, STRIKE_ROW] = 0.0
    synth.voices.bank = dataclasses.replace(synth.bank, row_gain=gain)
    return synth


# ---- pitch --------------------------------------------------------------------------------
def test_every_key_is_within_3_cents_of_equal_temperament():
    worst = (0.0, None)
    for pitch in range(21, 109):
        seconds = 1.0 if pitch < 40 else 0.4
        x = render_held(pitch, 100, seconds + 0.1, voices=1)[int(0.1 * SR):]
        f = peak_frequency(x, float(pitch_hz(pitch)))
        err = cents(f, float(pitch_hz(pitch)))
        if abs(err) > abs(worst[0]):
            worst = (err, pitch)
    assert abs(worst[0]) < 3.0, f"pitch {worst[1]} is {worst[0]:+.2f} cents off"


def test_upper_partials_are_slightly_sharp_like_a_stiff_string():
    """Partial 5 of middle C lies above 5 x f0 (inharmonicity), by less than a semitone."""
    f0 = float(pitch_hz(60))
    x = render_held(60, 127, 0.5, voices=1)
    f5 = peak_frequency(x, 5 * f0, cents_window=60)
    assert 3.0 < cents(f5, 5 * f0) < 40.0


# ---- aliasing -----------------------------------------------------------------------------
class MixTap(Synth):
    """The float mix just before the limiter and the int16 conversion (what the voices make)."""
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.mix_log = []
        process = self.output.process

        def tap(mix, out):
            self.mix_log.append(mix[:, 0].astype(np.float64))
            process(mix, out)
        self.output.process = tap


@pytest.mark.parametrize("pitch", [84, 96, 100, 104, 108])
def test_treble_keys_do_not_alias(pitch):
    """Everything that is not one of the key's own partials (aliases fold anywhere, above or
    below the fundamental) is at least 60 dB under the note, at full velocity, measured on
    the int16 output (rendered at a 0 dBFS ceiling so that 16-bit rounding is not what we
    measure) and at least 75 dB under it in the synth's float mix."""
    synth = MixTap(voices=1, channels=1, ceiling_dbfs=0.0)
    synth.note_on(pitch, 127)
    sustain(synth)
    synth.mix_log.clear()
    y = _mono(render_frames(synth, int(1.25 * SR)))[SR // 4:SR // 4 + SR]
    mix = np.concatenate(synth.mix_log)[SR // 4:SR // 4 + SR]
    partials = synth.bank.partial_frequencies(pitch)
    assert partials.max() < 20000.0
    level = non_partial_energy_db(y, partials)
    assert level < -60.0, f"pitch {pitch}: int16 output non-partial energy {level:.1f} dB"
    level = non_partial_energy_db(mix, partials)
    assert level < -75.0, f"pitch {pitch}: float mix non-partial energy {level:.1f} dB"
    # and the measurement would see an alias 50 dB down, if there were one
    rms = np.sqrt(np.mean(y ** 2))
    alias = rms * 10 ** (-50 / 20) * math.sqrt(2) * np.sin(2 * np.pi * 1234.5 * np.arange(SR) / SR)
    assert non_partial_energy_db(y + alias, partials) > -55.0


def test_energy_above_the_top_keys_highest_partial_is_60_db_down():
    synth = Synth(voices=1, channels=1, ceiling_dbfs=0.0)
    synth.note_on(108, 127)
    sustain(synth)
    x = _mono(render_frames(synth, int(1.25 * SR)))[SR // 4:SR // 4 + SR]
    top = synth.bank.partial_frequencies(108).max()
    power = np.abs(np.fft.rfft(x * _blackman_harris(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / SR)
    above = power[freqs > top + 50.0].sum()
    assert 10 * math.log10(above / power.sum()) < -60.0


@pytest.mark.parametrize("sample_rate,block", [(44100, 64), (48000, 256), (22050, 128)])
def test_other_rates_and_block_sizes_stay_in_tune_and_band_limited(sample_rate, block):
    for pitch in (45, 69, 108):
        synth = Synth(sample_rate=sample_rate, block_frames=block, voices=1, channels=1,
                      ceiling_dbfs=0.0)
        assert synth.bank.partial_frequencies(pitch).max() <= 0.45 * sample_rate
        synth.note_on(pitch, 127)
        sustain(synth)
        x = np.concatenate([synth.render()[:, 0].astype(np.float64)
                            for _ in range(int(0.6 * sample_rate) // block)])
        x = x[int(0.1 * sample_rate):int(0.1 * sample_rate) + sample_rate // 2]
        n = len(x)
        spectrum = np.abs(np.fft.rfft(x * np.hanning(n), 4 * n))
        freqs = np.fft.rfftfreq(4 * n, 1.0 / sample_rate)
        f0 = float(pitch_hz(pitch))
        band = np.flatnonzero(np.abs(freqs - f0) < f0 * 0.03)
        k = band[np.argmax(spectrum[band])]
        a, b, c = np.log(spectrum[k - 1:k + 2])
        f = (k + 0.5 * (a - c) / (a - 2 * b + c)) * sample_rate / (4 * n)
        assert abs(cents(f, f0)) < 3.0, (sample_rate, pitch, cents(f, f0))
        # nothing outside the partials (aliases would fold in below Nyquist)
        power = np.abs(np.fft.rfft(x * _blackman_harris(n))) ** 2
        near = np.zeros(len(power), dtype=bool)
        bins = np.fft.rfftfreq(n, 1.0 / sample_rate)
        for fp in synth.bank.partial_frequencies(pitch):
            near |= np.abs(bins - fp) <= 12.0
        assert 10 * math.log10(power[~near].sum() / power.sum()) < -60.0


# ---- clicks -------------------------------------------------------------------------------
# Threshold: a click is a step the waveform itself never makes. We allow the largest step the
# same note makes while held (its own steepest slope) plus 3% of its peak: the envelope may
# change by at most ~2% of full level per sample (2 ms attack; ~1 ms fade time constant), so
# an honest fade adds at most that much to a step, while a cut adds the whole sample value.
# Each test also checks that a hard cut at the chosen frame would exceed the threshold.

def click_threshold(held: np.ndarray) -> float:
    return max_step(held) + 0.03 * float(np.max(np.abs(held)))


def local(x: np.ndarray, frame: int, seconds: float = 0.02) -> np.ndarray:
    """The part of a held note around ``frame``: a piano's note decays (its upper partials
    within a few hundred ms), so what a click is measured against is the waveform near the
    event, not its loudest moment long before."""
    half = int(seconds * SR)
    return x[max(0, frame - half):frame + half]


def _mono(block: np.ndarray) -> np.ndarray:
    return block.astype(np.float64)[:, 0]


def test_note_on_and_note_off_do_not_click():
    pitch = 48
    ref_synth = without_strike(Synth(voices=1))
    ref_synth.note_on(pitch, 127)
    ref = _mono(render_frames(ref_synth, SR))            # held for a second, never released
    onset_threshold = click_threshold(ref[int(0.003 * SR):int(0.013 * SR)])   # after the attack
    # release where the waveform is at its largest: a cut there would click
    window = slice(int(0.5 * SR), int(0.52 * SR))
    off_frame = window.start + int(np.argmax(np.abs(ref[window])))
    threshold = click_threshold(local(ref, off_frame))
    assert abs(ref[off_frame]) > threshold, "a cut at the note-off frame would be detectable"

    synth = without_strike(Synth(voices=1))
    synth.note_on(pitch, 127)
    synth.note_off(pitch, at_frame=off_frame)
    y = _mono(render_frames(synth, SR))
    assert np.max(np.abs(y[:off_frame] - ref[:off_frame])) <= 2   # same note up to the off
    onset = max_step(y[:int(0.01 * SR)])
    release = max_step(y[off_frame - 1:])
    assert onset <= onset_threshold, f"note-on step {onset} > {onset_threshold}"
    assert release <= threshold, f"note-off step {release} > {threshold}"


@pytest.mark.parametrize("same_pitch", [False, True], ids=["steal", "retrigger"])
def test_voice_steal_and_retrigger_fade_instead_of_cutting(same_pitch):
    """With one voice, a second note steals it (or re-strikes the same key): the old sound
    fades in a few ms before the new one starts, so no step exceeds the threshold."""
    first, second = 48, (48 if same_pitch else 55)
    ref_synth = without_strike(Synth(voices=1))
    ref_synth.note_on(first, 127)
    ref = _mono(render_frames(ref_synth, SR // 2))
    window = slice(int(0.06 * SR), int(0.08 * SR))       # while the old note is still loud
    at = window.start + int(np.argmax(np.abs(ref[window])))
    other = without_strike(Synth(voices=1))
    other.note_on(second, 127)
    ref2 = _mono(render_frames(other, SR // 2))
    threshold = click_threshold(local(ref, at))
    assert abs(ref[at]) > threshold, "a cut at the steal frame would be detectable"

    synth = without_strike(Synth(voices=1))
    synth.note_on(first, 127)
    synth.note_on(second, 127, at_frame=at)
    y = _mono(render_frames(synth, SR))
    new_start = [f for _, f in synth.started()][-1]
    # the old note fades (its own steps near the steal at most), then the new one starts
    # from silence (its own steps just after its attack at most)
    step = max_step(y[at - 1:new_start])
    assert step <= threshold, f"fade step {step} > {threshold}"
    onset_threshold = click_threshold(ref2[int(0.003 * SR):int(0.013 * SR)])
    step = max_step(y[new_start - 1:new_start + int(0.01 * SR)])
    assert step <= onset_threshold, f"new onset step {step} > {onset_threshold}"
    assert synth.sounding() == {(second, PLAYER)}
    assert synth.stats["steals" if not same_pitch else "retriggers"] == 1
    assert at < new_start <= at + int(0.01 * SR), "the new note starts within 10 ms"


@pytest.mark.parametrize("pitch", [36, 60, 84])
def test_the_hammer_knock_builds_up_from_silence(pitch):
    """The strike noise alone (the partial rows muted): it starts from zero and takes over a
    millisecond to build up (a felt hammer, not a click), and is over within 80 ms."""
    knock = without_partials(Synth(voices=1, channels=1))
    knock.note_on(pitch, 100)
    x = _mono(render_frames(knock, int(0.1 * SR)))
    peak = np.max(np.abs(x))
    assert peak > 100, "the knock is heard"
    assert np.max(np.abs(x[:int(0.0005 * SR)])) < 0.25 * peak, "no step at the strike"
    assert int(np.argmax(np.abs(x))) > int(0.001 * SR)
    assert np.max(np.abs(x[int(0.08 * SR):])) <= 1, "over within 80 ms"


def without_partials(synth: Synth) -> Synth:
    import dataclasses
    gain = synth.bank.row_gain.copy()
    gain[:, :STRIKE_ROW] = 0.0
    synth.voices.bank = dataclasses.replace(synth.bank, row_gain=gain)
    return synth


def _knocks(notes, frames: int) -> tuple[np.ndarray, Synth]:
    """The strike noise alone (partials muted, no room) of ``notes`` = (pitch, velocity,
    start frame, end frame), mono, as float samples before the int16 rounding."""
    synth = without_partials(Synth(voices=4, channels=1, block_frames=64))
    synth.output.float_out = np.zeros((64, 1), dtype=np.float32)
    for pitch, velocity, on, off in notes:
        synth.note_on(pitch, velocity, at_frame=on)
        synth.note_off(pitch, at_frame=off)
    out = []
    for _ in range(frames // 64):
        synth.render()
        out.append(synth.output.float_out[:, 0].astype(np.float64))
    assert synth.output.comp_gain_db == 0.0 and synth.output.limiter_gain == 1.0, \
        "the output stage must be linear here: the knocks are summed below"
    return np.concatenate(out), synth


@pytest.mark.parametrize("others", [[(52, 80, 20000, 40000)], []],
                         ids=["while-a-strike-sounds", "after-every-strike-ended"])
def test_a_knock_is_the_same_whenever_it_is_struck(others):
    """The strike stage runs only while a strike sounds (engine._strikes), and a voice
    keeps what its last strike left in the weights. A knock struck on a voice whose earlier
    note has ended - while another key's knock sounds, or after every strike has ended and
    the stage has rested - is the knock struck alone on a fresh synth at the same frame
    (the sum of each note alone, within what splitting a block at a strike's frame changes
    in the other's gain ramp, under 0.1 %)."""
    frames = 64 * 700
    earlier = (40, 70, 130, 6000)       # voice 0: released, idle at ~20700
    knock = (64, 90, 21537, 40000)      # (off the block grid) takes voice 0 again
    both, synth = _knocks([earlier, knock] + others, frames)
    assert int(np.flatnonzero(synth.voices.pitch == 64)[0]) == 0, "the knock reuses voice 0"
    alone = sum(_knocks([note], frames)[0] for note in [earlier, knock] + others)
    assert np.max(np.abs(_knocks([knock], frames)[0])) > 50, "the knock is heard"
    assert np.max(np.abs(both - alone)) < 2e-3 * np.max(np.abs(alone)), \
        "a knock depends on when it was struck"


def test_a_key_pressed_again_during_its_release_starts_at_once():
    synth = Synth(voices=4)
    synth.note_on(60, 100, stamp=1.0)
    render_frames(synth, 4800)
    synth.note_off(60)
    synth.render()
    synth.note_on(60, 100, stamp=2.0)
    frame = synth.frame
    synth.render()
    assert (2.0, frame) in synth.started(), "no fade-and-wait for a key that was already up"
    assert synth.sounding() == {(60, PLAYER)} and synth.stats["retriggers"] == 0
    synth.note_off(60)
    render_frames(synth, SR)
    assert synth.is_silent()


def test_volume_knob_glides_without_zipper_noise():
    synth = Synth(voices=1)
    synth.note_on(48, 127)
    before = _mono(render_frames(synth, SR // 4))
    threshold = click_threshold(before[int(0.01 * SR):])
    synth.set_gain(0.0)
    after = _mono(render_frames(synth, SR // 4))
    joined = np.concatenate([before[-1:], after])
    assert max_step(joined) <= threshold
    assert np.all(after[-synth.block_frames:] == 0), "gain 0 is silence"
    synth.set_gain(1.0)
    back = _mono(render_frames(synth, SR // 4))
    assert max_step(np.concatenate([after[-1:], back])) <= threshold
    assert np.max(np.abs(back)) > 0


# ---- level --------------------------------------------------------------------------------
@pytest.mark.parametrize("ceiling_dbfs", [-6.0, -12.0])
def test_ceiling_holds_with_every_voice_at_full_velocity(ceiling_dbfs):
    synth = Synth(voices=16, ceiling_dbfs=ceiling_dbfs, gain=1.0)
    limit = 32767 * 10 ** (ceiling_dbfs / 20)
    peaks = []
    for chord in range(6):                   # bass clusters, struck together and re-struck
        for p in range(21 + chord, 21 + chord + 16 * 3, 3):
            synth.note_on(p, 127)
        peaks.append(np.max(np.abs(render_frames(synth, SR // 4).astype(np.int32))))
    synth.all_notes_off()
    peaks.append(np.max(np.abs(render_frames(synth, SR // 2).astype(np.int32))))
    assert max(peaks) <= limit, f"peak {max(peaks)} > ceiling {limit:.0f}"
    assert max(peaks) > 0.7 * limit, "the chords were loud enough to need the limiter"
    assert synth.stats["limited_blocks"] > 0


def test_a_single_soft_note_is_untouched_by_the_limiter():
    synth = Synth(voices=4)
    synth.note_on(60, 64)
    render_frames(synth, SR // 2)
    assert synth.stats["limited_blocks"] == 0 and synth.stats["clipped_blocks"] == 0


def test_harder_strikes_are_louder_and_brighter():
    def centroid_and_rms(velocity):
        x = render_held(60, velocity, 0.2, voices=1)[int(0.01 * SR):]
        power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
        freqs = np.fft.rfftfreq(len(x), 1.0 / SR)
        return (power * freqs).sum() / power.sum(), np.sqrt(np.mean(x ** 2))
    soft, hard = centroid_and_rms(30), centroid_and_rms(127)
    assert hard[1] > 3 * soft[1]
    assert hard[0] > 1.2 * soft[0]


def test_upper_partials_decay_faster_than_the_fundamental():
    """The tone mellows as it rings: the spectral centroid (magnitude-weighted, as in
    shared/notes/piano-reference.md) of middle C at 1.3-1.4 s is well under the strike's.
    (The share of energy above partial 3 is not the measure: in the sampled reference it
    barely changes, 13.5% -> 12.1%, while its centroid falls by a third.)"""
    x = render_held(60, 127, 1.5, voices=1)

    def centroid(segment):
        magnitude = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
        freqs = np.fft.rfftfreq(len(segment), 1.0 / SR)
        return (magnitude * freqs).sum() / magnitude.sum()
    early, late = x[int(0.01 * SR):int(0.11 * SR)], x[int(1.3 * SR):int(1.4 * SR)]
    assert centroid(late) < 0.8 * centroid(early)


def test_bass_and_treble_registers_differ():
    """Bass keys carry many strong partials, treble keys few; bass rings longer."""
    bank = Synth(voices=1).bank

    def strong_partials(pitch):
        x = render_held(pitch, 100, 0.3, voices=1)
        power = np.abs(np.fft.rfft(x * _blackman_harris(len(x)))) ** 2
        freqs = np.fft.rfftfreq(len(x), 1.0 / SR)
        peaks = np.array([power[np.abs(freqs - f) < 8.0].max()
                          for f in bank.partial_frequencies(pitch)])
        return int(np.sum(peaks > peaks.max() * 1e-4))          # within 40 dB
    bass, treble = strong_partials(36), strong_partials(84)
    assert bass > 4 * treble and treble >= 3, (bass, treble)

    def decay_ratio(pitch):
        x = render_held(pitch, 100, 1.0, voices=1)
        return np.sqrt(np.mean(x[-4800:] ** 2)) / np.sqrt(np.mean(x[480:5280] ** 2))
    assert decay_ratio(36) > decay_ratio(96)


# ---- determinism, release, scheduling -------------------------------------------------------
NOTES = [(60, 90, 0.0, 0.4), (64, 70, 0.1, 0.5), (67, 110, 0.2, 0.45, AI), (36, 127, 0.05, 0.3),
         (60, 80, 0.4, 0.6)]


def test_same_notes_give_the_same_samples():
    a = render_offline(NOTES)
    b = render_offline(NOTES)
    assert a.dtype == np.int16 and a.shape[1] == 2
    assert np.array_equal(a, b)
    assert np.max(np.abs(a)) > 1000


def test_a_released_note_decays_to_exact_silence():
    synth = Synth(voices=2)
    synth.note_on(40, 127)
    render_frames(synth, SR // 2)
    synth.note_off(40)
    assert synth.sounding() == {(40, PLAYER)}           # the off applies at the next block
    y = _mono(render_frames(synth, SR))
    assert synth.sounding() == set()
    rms = [np.sqrt(np.mean(y[i:i + 960] ** 2)) for i in range(0, int(0.3 * SR), 960)]
    assert all(b <= a + 1e-9 for a, b in zip(rms, rms[1:])), "the release only goes down"
    silent_from = int(np.flatnonzero(y)[-1]) + 1
    assert silent_from < int(0.6 * SR), f"still sounding {silent_from / SR:.2f} s after note-off"
    assert synth.is_silent()
    assert not np.any(render_frames(synth, 1024))


def test_the_shortest_tap_is_still_heard():
    """Key down and up before the audio thread even saw them: the strike completes (~3 ms),
    then releases, like a piano's hammer; the note is not held afterwards."""
    synth = Synth(voices=2)
    synth.note_on(60, 100)
    synth.note_off(60)
    first = _mono(synth.render().copy())
    assert synth.sounding() == set()
    y = np.concatenate([first, _mono(render_frames(synth, SR // 2))])
    assert np.max(np.abs(y)) > 1000
    assert synth.is_silent()


def test_release_tail_is_between_100_and_600_ms():
    synth = Synth(voices=1)
    synth.note_on(60, 100)
    held = _mono(render_frames(synth, SR // 2))
    synth.note_off(60)
    y = _mono(render_frames(synth, SR))
    level = np.sqrt(np.mean(held[-960:] ** 2))
    env = np.array([np.sqrt(np.mean(y[i:i + 480] ** 2)) for i in range(0, len(y) - 480, 480)])
    below_40db = np.flatnonzero(env < level * 0.01)[0] * 480 / SR
    assert 0.1 <= below_40db <= 0.6, f"-40 dB after {below_40db:.3f} s"


def test_scheduled_note_starts_on_its_exact_frame():
    synth = Synth(voices=4)
    render_frames(synth, 1024)
    at = synth.frame + 3 * synth.block_frames + 37          # mid-block
    synth.note_on(72, 100, tag=AI, at_frame=at, stamp=12.5)
    synth.note_on(76, 100, tag=AI, at_frame=at + 1)         # a 1-frame segment in between
    start = synth.frame
    y = render_frames(synth, 8 * synth.block_frames)
    first = start + int(np.flatnonzero(np.any(y != 0, axis=1))[0])
    assert first == at
    assert (12.5, at) in synth.started()
    assert (None, at + 1) in synth.started()
    assert synth.sounding() == {(72, AI), (76, AI)}


def test_late_scheduled_note_plays_at_once():
    synth = Synth()
    render_frames(synth, 4096)
    synth.note_on(60, 100, at_frame=10)                    # already in the past
    synth.render()
    assert synth.stats["late_events"] == 1 and synth.sounding() == {(60, PLAYER)}


def test_many_events_in_one_block_are_all_applied():
    synth = Synth(voices=32, max_splits=4)
    base = synth.frame + synth.block_frames
    for i in range(20):
        synth.note_on(40 + i, 100, tag=AI, at_frame=base + 5 * i)
    render_frames(synth, 3 * synth.block_frames)
    assert len(synth.sounding()) == 20
    assert synth.stats["quantized_events"] == 20 - 4 - 1


def test_cancel_releases_one_tag_and_drops_its_schedule():
    synth = Synth()
    synth.note_on(60, 100, PLAYER)
    synth.note_on(64, 100, AI)
    later = synth.frame + SR
    synth.note_on(67, 100, AI, at_frame=later)
    synth.note_off(67, AI, at_frame=later + 4800)
    synth.render()
    assert synth.sounding() == {(60, PLAYER), (64, AI)}
    synth.cancel(AI)
    render_frames(synth, int(1.5 * SR))
    assert synth.sounding() == {(60, PLAYER)}
    assert 67 not in [p for _, _, p, _ in synth.started_notes()]
    synth.all_notes_off()
    render_frames(synth, SR)
    assert synth.sounding() == set() and synth.is_silent()


def test_stealing_takes_the_oldest_held_note():
    synth = Synth(voices=2)
    for p in (60, 62):
        synth.note_on(p, 100)
        render_frames(synth, 1024)
    synth.note_on(64, 100)
    render_frames(synth, 2048)
    assert synth.sounding() == {(62, PLAYER), (64, PLAYER)}
    assert synth.stats["steals"] == 1


def test_a_released_voice_is_stolen_before_a_held_one():
    synth = Synth(voices=2)
    synth.note_on(60, 100)
    synth.note_on(62, 100)
    render_frames(synth, 1024)
    synth.note_off(62)
    synth.render()
    synth.note_on(64, 100)
    render_frames(synth, 2048)
    assert synth.sounding() == {(60, PLAYER), (64, PLAYER)}


def test_a_held_note_is_released_after_max_hold():
    synth = Synth(max_hold_s=0.5)
    synth.note_on(60, 100)
    render_frames(synth, int(0.4 * SR))
    assert synth.sounding() == {(60, PLAYER)}
    render_frames(synth, int(0.3 * SR))
    assert synth.sounding() == set() and synth.stats["auto_releases"] == 1


# ---- robustness of the command path ---------------------------------------------------------
def test_bad_arguments_never_crash_and_never_stick():
    synth = Synth()
    for pitch in (-5, 0, 20, 109, 127, 500, float("nan"), "x", None):
        synth.note_on(pitch, 100)
        synth.note_off(pitch)
    synth.note_on(60, 500)           # clamped to 127
    synth.note_on(62, 0)             # velocity 0 is a note-off (MIDI convention)
    synth.note_on(21, 1)
    synth.note_on(108, 127)
    synth.set_gain(7.0)
    synth.set_gain(float("nan"))
    synth.set_gain(0.8)
    synth.render()
    assert synth.sounding() == {(60, PLAYER), (21, PLAYER), (108, PLAYER)}
    assert synth.stats["ignored_notes"] == 9
    assert (None, 0) in synth.started()
    synth.note_on(66, 100, stamp="not a time")          # plays, without a stamp
    synth.note_on(68, 100, at_frame=float("nan"))        # ignored
    synth.note_off(66, at_frame="soon")                  # a bad time: released at once
    synth.render()
    assert (66, PLAYER) not in synth.sounding() and (68, PLAYER) not in synth.sounding()
    synth.note_on(64, 100, tag=99)       # no such tag: ignored like a bad pitch
    synth.note_off(60, tag=-1)
    synth.cancel(1000)
    synth.render()
    assert synth.sounding() == {(60, PLAYER), (21, PLAYER), (108, PLAYER)}


def test_full_queue_drops_note_ons_but_never_a_release():
    synth = Synth(queue_size=4)
    for p in (60, 62, 64, 65, 67):      # the 5th does not fit
        synth.note_on(p, 100)
    synth.note_off(60)                   # nor does this: it goes through the flags
    synth.cancel(AI)
    synth.render()
    assert synth.stats["dropped_commands"] == 1
    assert synth.stats["flagged_releases"] == 2
    assert synth.sounding() == {(62, PLAYER), (64, PLAYER), (65, PLAYER)}
    # a flag never releases a note played after it
    for p in (70, 72, 74, 76):
        synth.note_on(p, 100)
    synth.all_notes_off()                # flagged: releases everything before it ...
    synth.render()
    synth.note_on(60, 100)               # ... but not this later note
    synth.render()
    assert synth.sounding() == {(60, PLAYER)}


def test_full_queue_with_a_scheduled_note_off_cancels_the_tag():
    synth = Synth(queue_size=2)
    at = synth.frame + 4 * synth.block_frames
    synth.note_on(60, 100, AI, at_frame=at)
    synth.note_on(62, 100, AI, at_frame=at)
    synth.note_off(60, AI, at_frame=at + 1000)     # does not fit: its note must not stick
    synth.note_on(50, 100, PLAYER)
    render_frames(synth, SR // 2)
    assert synth.sounding() == {(50, PLAYER)} or synth.sounding() == set()
    assert not any(t == AI for _, t in synth.sounding())


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_command_storm_keeps_every_promise(seed):
    """Random ons, offs (immediate and scheduled, some in the past), cancels, all-offs, gain
    moves and a tiny queue that overflows: no exception, the output never passes the
    ceiling, and all-notes-off always ends in silence with nothing held."""
    rng = np.random.default_rng(seed)
    synth = Synth(voices=6, queue_size=8, block_frames=128)
    limit = 32767 * 10 ** (-6 / 20)
    for block in range(600):
        for _ in range(int(rng.integers(0, 6)) if rng.random() < 0.9 else 20):   # some bursts
            pitch, tag = int(rng.integers(20, 110)), int(rng.integers(0, 2))
            r = rng.random()
            at = None if rng.random() < 0.6 else synth.frame + int(rng.integers(-300, 600))
            if r < 0.45:
                synth.note_on(pitch, int(rng.integers(1, 128)), tag, at_frame=at)
            elif r < 0.9:
                synth.note_off(pitch, tag, at_frame=at)
            elif r < 0.95:
                synth.cancel(tag)
            elif r < 0.97:
                synth.all_notes_off()
            else:
                synth.set_gain(float(rng.random()))
        y = synth.render()
        assert np.max(np.abs(y.astype(np.int32))) <= limit
    render_frames(synth, 1024)                       # every scheduled command is due now
    if seed % 2:
        synth.all_notes_off()
    else:                                            # 176 note-offs into an 8-slot queue
        for tag in (PLAYER, AI):
            for pitch in range(21, 109):
                synth.note_off(pitch, tag)
    render_frames(synth, SR)
    assert synth.sounding() == set() and synth.is_silent()
    assert not np.any(render_frames(synth, 512))
    assert synth.stats["dropped_commands"] + synth.stats["flagged_releases"] > 0, "queue overflowed"


def test_commands_from_another_thread_leave_nothing_stuck():
    import threading
    synth = Synth(voices=8, queue_size=64)
    stop = threading.Event()

    def hammer():
        rng = np.random.default_rng(1)
        while not stop.is_set():
            p = int(rng.integers(40, 90))
            tag = int(rng.integers(0, 2))
            synth.note_on(p, 100, tag)
            synth.note_off(p, tag)
            if rng.random() < 0.01:
                synth.cancel(AI)
    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(300):
            synth.render()
    finally:
        stop.set()
        for t in threads:
            t.join()
    render_frames(synth, SR)
    assert synth.sounding() == set()
    assert synth.is_silent()


# ---- real-time properties -------------------------------------------------------------------
@pytest.mark.parametrize("loud", [False, True], ids=["normal", "limiting"])
def test_render_allocates_no_buffers(loud):
    """tracemalloc sees numpy's data buffers. With 2048-frame blocks any per-block buffer
    would be >= 8 KB; the render path only makes short-lived view objects and, for commands,
    small index arrays over the 16 voices (~100 bytes each). The loud case runs the limiter
    and the soft clip too."""
    synth = Synth(block_frames=2048, voices=16)
    for i in range(16):
        synth.note_on((21 + 2 * i) if loud else (30 + 4 * i), 127 if loud else 100)
    synth.note_on(90, 100, tag=AI, at_frame=synth.frame + 5000)
    synth.note_off(35)
    for _ in range(10):
        synth.render()
    clipped = synth.stats["clipped_blocks"]

    def run():
        for i in range(50):
            if i % 10 == 5:                # commands too: a steal, a scheduled start, a release
                synth.note_on(100 - i // 10, 90, tag=AI, at_frame=synth.frame + 2700)
                synth.note_off(30 + 4 * (i // 10))
                if loud:                   # a sudden cluster over decayed notes: the
                    for k in range(8):         # compressor is too slow, the soft clip acts
                        synth.note_on(21 + i // 10 + 3 * k, 127)
            synth.render()
    peak, grown, kept = render_memory(run)
    if loud:
        assert synth.stats["limited_blocks"] > 0 and synth.stats["clipped_blocks"] > clipped
    assert peak < 6144, f"render allocated {peak} bytes at its peak"
    # kept: the command deque's block, the counters and numpy's small cache of view shapes
    # (968 B before the render path was rewritten, 1032 B after); a leak of one object per
    # block would keep >= 50 x 32 B
    assert kept < 1536, f"render kept {kept} bytes (the process: {grown})"


def test_block_is_preallocated_and_shaped_for_the_device():
    for channels in (1, 2, 4):
        synth = Synth(channels=channels, block_frames=256)
        synth.note_on(60, 100)
        a = synth.render()
        b = synth.render()
        assert a is b and a.shape == (256, channels) and a.dtype == np.int16
        assert synth.frame == 512
    four = Synth(channels=4)
    four.note_on(60, 100)
    y = render_frames(four, 4096)
    assert np.array_equal(y[:, 0], y[:, 2]) and np.array_equal(y[:, 1], y[:, 3])


def test_tables_fit_the_memory_budget():
    assert Synth().table_bytes <= 8 * 1024 * 1024


def test_bad_config_names_the_parameter():
    from piano_buddy.errors import ConfigError
    with pytest.raises(ConfigError, match="voices"):
        Synth(voices=0)
    with pytest.raises(ConfigError, match="ceiling_dbfs"):
        Synth(ceiling_dbfs=3.0)


def test_write_wav_round_trips(tmp_path):
    import wave
    y = render_offline([(69, 100, 0.0, 0.2)], channels=2)
    path = write_wav(tmp_path / "sub" / "a.wav", y, SR)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, SR, 2)
        back = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert np.array_equal(back, y)
    with pytest.raises(ValueError):
        write_wav(tmp_path / "b.wav", y.astype(np.float32), SR)


def test_demo_writes_a_wav_under_the_ceiling(tmp_path, capsys):
    import wave
    from piano_buddy.synth.demo import main
    assert main([str(tmp_path / "demo.wav")]) == 0
    with wave.open(str(tmp_path / "demo.wav")) as w:
        y = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert 0.5 * 16384 < np.max(np.abs(y)) <= 32767 * 10 ** (-6 / 20)
    assert "peak" in capsys.readouterr().out
