"""Phrase: tempo estimate, quantization to the 16th grid and back, reply length."""

import random

import pytest

from piano_buddy.phrase import (Note, StepNote, estimate_tempo, plan_reply, quantize,
                                step_seconds, unquantize)


def played(qpm, steps, jitter=0.0, seed=0):
    """Notes at grid positions (start, length in steps) played at qpm with human jitter."""
    rnd = random.Random(seed)
    s = step_seconds(qpm)
    return [Note(60 + i % 5, 10.0 + a * s + rnd.uniform(-jitter, jitter),
                 10.0 + (a + n) * s * 0.9) for i, (a, n) in enumerate(steps)]


RHYTHM = [(0, 2), (2, 2), (4, 1), (5, 1), (6, 2), (8, 4), (12, 2), (14, 2)]


@pytest.mark.parametrize("qpm", [72, 90, 110, 132, 150])
def test_tempo_is_found_within_a_few_percent(qpm):
    est = estimate_tempo(played(qpm, RHYTHM, jitter=0.012, seed=qpm))
    assert abs(est - qpm) / qpm < 0.04, est


def test_too_few_onsets_fall_back():
    assert estimate_tempo(played(90, RHYTHM[:3]), fallback_qpm=120) == 120


def test_quantize_keeps_rests_durations_and_overlaps():
    s = step_seconds(120)
    notes = [Note(60, 0.0, 2 * s), Note(64, 4 * s, 5 * s), Note(67, 4.02 * s, 8 * s)]
    q = quantize(notes, 120)
    assert q == [StepNote(60, 0, 2), StepNote(64, 4, 5), StepNote(67, 4, 8)]
    back = unquantize(q, 120, origin=0.0)
    assert [n.start for n in back] == pytest.approx([0, 4 * s, 4 * s])
    assert [n.end for n in back] == pytest.approx([2 * s, 5 * s, 8 * s])


def test_staccato_tap_keeps_one_step():
    q = quantize([Note(60, 0.0, 0.01)], 120)
    assert q == [StepNote(60, 0, 1)]


def test_reply_length_follows_the_phrase_within_bounds():
    four_seconds = [Note(60, t, t + 0.4) for t in (0, 1, 2, 3.6)]
    p = plan_reply(four_seconds, fallback_qpm=120, min_seconds=2, max_seconds=8)
    assert p.reply_steps * step_seconds(p.qpm) == pytest.approx(4.0, abs=step_seconds(p.qpm))
    short = plan_reply([Note(60, 0, 0.2)], min_seconds=2, max_seconds=8, fallback_qpm=120)
    assert short.reply_steps == 16   # 2 s at 120 qpm
    long = plan_reply([Note(60, t, t + 0.5) for t in range(30)], max_seconds=8)
    assert long.reply_steps * step_seconds(long.qpm) <= 8.0 + 1e-9
