"""Turn-taking with the real conductor, synth, models and mock pins, under a frame clock."""

import numpy as np
import pytest

from piano_buddy.conductor import AI_TAG, Turn
from piano_buddy.events import Kind

from rig import Rig


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


def play_phrase(rig, buttons=(0, 2, 4, 5, 4, 2, 1, 0), hold=0.15, gap=0.1):
    for b in buttons:
        rig.tap(b, hold, gap)


def test_a_press_sounds_the_decoded_key_at_once_and_its_release_ends_it(rig):
    rig.press(3)
    (pitch,) = rig.player_notes
    assert 21 <= pitch <= 108
    assert rig.panel.leds[3].value == 1
    assert rig.conductor.held_pitches == {pitch}
    rig.run(0.05)                      # longer than the 10 ms debounce
    rig.release(3)
    assert not rig.player_notes
    assert rig.panel.leds[3].value == 0


def test_ai_answers_after_the_pause_and_not_before(rig):
    play_phrase(rig, gap=0.0)
    pause = rig.cfg.turns.pause
    rig.run(pause - 0.05)
    assert rig.conductor.turn is Turn.PLAYER
    waited = rig.run_until(lambda: rig.conductor.turn is Turn.AI, limit=1.0)
    assert waited <= 0.05 + 2 * rig.synth.block_frames / rig.sr
    assert rig.conductor.stats["replies"] == 1
    assert rig.turns[-2:] == ["player", "ai"]   # thinking happened in between, within a block
    rig.run(0.05)
    assert rig.ai_notes, "the reply starts at once"
    assert rig.panel.turn_led.value == 1


def test_no_answer_while_a_button_is_held(rig):
    play_phrase(rig, buttons=(0, 1, 2))
    rig.press(4)
    rig.run(3 * rig.cfg.turns.pause)
    assert rig.conductor.turn is Turn.PLAYER
    rig.release(4)
    rig.run_until(lambda: rig.conductor.turn is Turn.AI, limit=rig.cfg.turns.pause + 0.1)


def test_sustain_pedal_keeps_the_phrase_open_and_the_notes_sounding(rig):
    rig.midi(Kind.PEDAL, 64, 127)
    rig.midi(Kind.KEY_ON, 60, 100)
    rig.run(0.1)
    rig.midi(Kind.KEY_OFF, 60)
    rig.run(2.0)
    assert rig.conductor.turn is Turn.PLAYER
    assert 60 in rig.player_notes, "held by the pedal"
    rig.midi(Kind.PEDAL, 64, 0)
    assert not rig.player_notes
    rig.run_until(lambda: rig.conductor.turn is Turn.AI, limit=rig.cfg.turns.pause + 0.1)


def test_a_press_during_the_reply_silences_every_ai_note_and_starts_a_phrase(rig):
    play_phrase(rig)
    rig.run_until(lambda: rig.conductor.turn is Turn.AI)
    rig.run_until(lambda: bool(rig.ai_notes), limit=2.0)
    rig.press(6)
    assert rig.conductor.turn is Turn.PLAYER
    assert not rig.ai_notes
    assert len(rig.player_notes) == 1
    assert rig.conductor.stats["interrupts"] == 1
    assert rig.panel.turn_led.value == 0
    assert [led.value for i, led in enumerate(rig.panel.leds) if i != 6] == [0] * 7
    rig.run(0.05)
    rig.release(6)
    rig.run_until(lambda: rig.conductor.turn is Turn.AI, limit=rig.cfg.turns.pause + 0.1)
    rig.assert_nothing_stuck()


def test_reply_length_and_rhythm_follow_the_phrase(rig, monkeypatch):
    """The conductor plans a reply as long as the phrase lasted, and the reply's notes stay
    inside that plan. (How much of the plan sounds is the melody model's: a reply may end
    on a rest, and which one it samples depends on the phrase's keys, so the sounding
    length alone is no measure of the plan.)"""
    from piano_buddy import conductor
    from piano_buddy.phrase import step_seconds
    rig.keep_audio = False
    plans = []
    real = conductor.plan_reply

    def recording(*args, **kwargs):
        plans.append(real(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(conductor, "plan_reply", recording)
    play_phrase(rig, buttons=(0, 1, 2, 3, 4, 5, 6, 7, 6, 5, 4, 3), hold=0.2, gap=0.1)
    rig.run_until(lambda: rig.conductor.turn is Turn.AI)
    reply = rig.conductor.reply
    (plan,) = plans
    planned = plan.reply_steps * step_seconds(plan.qpm)
    assert 2.0 <= planned <= 8.0 + 0.2
    assert abs(planned - 3.6) < 1.0, planned   # the phrase lasted 3.6 s
    length = reply.end - min(n.start for n in reply.notes)
    assert 0.0 < length <= planned + 0.01, (length, planned)
    assert all(n.end > n.start for n in reply.notes)
    rig.assert_nothing_stuck()


def test_ai_notes_light_the_copy_me_buttons_in_step_with_the_notes(rig):
    """Each AI note lights the button the Genie encoder planned for it, while it sounds."""
    play_phrase(rig)
    rig.run_until(lambda: rig.conductor.turn is Turn.AI)
    reply = rig.conductor.reply
    assert len(reply.buttons) == len(reply.notes)
    first = min(range(len(reply.notes)), key=lambda i: reply.notes[i].start)
    rig.run_until(lambda: first in reply.started, limit=1.0)
    assert rig.panel.leds[reply.buttons[first]].value == 1
    seen = set()
    while rig.conductor.turn is Turn.AI:
        rig.step()
        sounding = [i for i in reply.started if i not in reply.ended]
        lit = {i for i, led in enumerate(rig.panel.leds) if led.value}
        assert lit == {reply.buttons[i] for i in sounding}
        seen |= lit
    assert all(led.value == 0 for led in rig.panel.leds)
    assert seen, "some LED lit during the reply"


def test_every_press_of_a_two_button_mash_sounds():
    """Defect: a press whose decoded key was already sounding (held by the other button)
    made no sound, about one mash in ten."""
    rig = Rig(seed=8)
    try:
        silent = 0
        rng = np.random.default_rng(2)
        for i in range(120):
            a, b = rng.choice(8, size=2, replace=False)
            rig.press(int(a))
            before = set(rig.player_notes)
            rig.press(int(b))                      # the second button, a moment later
            after = set(rig.player_notes)
            if len(after - before) != 1:
                silent += 1
            rig.run(0.05)
            rig.release(int(a))
            rig.release(int(b))
            rig.run(float(rng.uniform(0.05, 0.3)))
        assert silent == 0, f"{silent} of 120 second presses made no new sound"
    finally:
        rig.close()


def test_mashing_every_button_never_leaves_a_note_stuck():
    rig = Rig(seed=3)
    rng = np.random.default_rng(0)
    down = set()
    try:
        for i in range(600):     # 20 edges a second for 30 s, with pauses and replies
            if i % 60 == 59:     # every few seconds the child lets go and listens a moment
                for b in list(down):
                    rig.release(b)
                down.clear()
                rig.run(float(rng.uniform(0.85, 2.5)))
            b = int(rng.integers(8))
            if b in down:
                rig.release(b)
                down.discard(b)
            else:
                rig.press(b)
                down.add(b)
            rig.run(float(rng.choice([0.0, 0.03, 0.05, 0.2, 1.2], p=[.3, .3, .2, .15, .05])))
        assert rig.conductor.stats["replies"] >= 1
        assert rig.conductor.stats["errors"] == 0
        rig.assert_nothing_stuck()
    finally:
        rig.close()


def test_a_lost_release_edge_does_not_leave_the_note_sounding(rig):
    rig.press(2)
    rig.pins[2]._state = True          # the level goes up, but the edge never fires
    rig.run(1.0)
    assert not rig.player_notes
    assert rig.conductor.stats["lost_releases"] == 1


def test_a_fault_shows_the_error_pattern_until_it_clears(rig):
    rig.conductor.report_fault("audio", "device 'default' vanished")
    rig.run(0.05)
    assert rig.panel.error
    rig.conductor.report_fault("audio", None)
    rig.run(0.05)
    assert not rig.panel.error


def test_silence_everything_mid_reply_leaves_nothing_sounding(rig):
    play_phrase(rig)
    rig.run_until(lambda: bool(rig.ai_notes), limit=3.0)
    rig.press(1)                     # a held player note as well
    rig.conductor.silence_everything()
    rig.pins[1].drive_high()
    rig.run(0.02)
    assert not rig.synth.sounding()
    rig.run(1.0)
    assert rig.synth.is_silent()


def test_same_seed_same_duet():
    def duet():
        r = Rig(seed=5)
        try:
            play_phrase(r)
            r.run_until(lambda: r.conductor.turn is Turn.AI)
            return [(n.pitch, round(n.start - r.now(), 3)) for n in r.conductor.reply.notes]
        finally:
            r.close()
    assert duet() == duet()


def test_a_reply_is_planned_and_shown_in_onset_order():
    """Defect: the reply's notes were sorted as tuples (pitch first), so the copy-me encoder
    read the melody in pitch order and lit buttons for a melody nobody played."""
    rig = Rig(seed=8)
    seen = []
    plan = rig.conductor.copy_me
    rig.conductor.copy_me = lambda notes: seen.append(list(notes)) or plan(notes)
    try:
        for b in (6, 1, 4, 2, 7):
            rig.tap(b)
        rig.run_until(lambda: rig.conductor.turn is Turn.AI, limit=5)
        (notes,) = seen
        assert [n.start for n in notes] == sorted(n.start for n in notes)
        assert [n.pitch for n in notes] != sorted(n.pitch for n in notes)   # not a scale up
        assert list(rig.conductor.reply.notes) == notes
    finally:
        rig.close()


def test_pressing_the_lit_buttons_through_the_box_plays_the_replys_shape():
    """Copy-me end to end: the lamps the box lights for a reply, pressed at the reply's
    onsets on the box's own pins (the decoder reset after the reply, as the plan assumed),
    move the way the reply moved on most of its melodic steps (consecutive notes of
    different pitch, as issue 10 and `make eval` count them; the planner's figure on 200
    replies: 93.5%). Twelve replies, 74 such steps: 68 kept (92%); the Genie before the
    fourth retrain kept 71 of 73 on its own replies.

    A repeated note of the reply is not counted: its lamp is the same button again, and
    pressed again at the reply's pace (0.1-0.16 s) the decoder moves on to another key
    (0.6% the same key on the walks' fast repeats, as Magenta's 5%). Neither this Genie
    nor the one before it reproduced any of the replies' repeats here (0 of 18, 0 of 11).
    """
    agree = total = 0
    for seed in range(1, 13):
        rig = Rig(seed=seed)
        try:
            c = rig.conductor
            for b in (2, 5, 3, 6, 4):
                rig.tap(b)
            rig.run_until(lambda: c.turn is Turn.AI, limit=5)
            reply = c.reply
            order = sorted(range(len(reply.notes)), key=lambda i: reply.notes[i].start)
            notes = [reply.notes[i] for i in order]
            buttons = [reply.buttons[i] for i in order][:12]
            onsets = [n.start - notes[0].start for n in notes][:12]
            rig.run_until(lambda: c.turn is Turn.PLAYER, limit=15)
            start = rig.now()
            for b, t in zip(buttons, onsets):
                rig.run(max(0.0, start + t - rig.now()))
                rig.press(b)
                rig.run(0.05)
                rig.release(b)
            played = [n.pitch for n in c.phrase][-len(buttons):]
            wanted = [n.pitch for n in notes][:len(buttons)]
            for i in range(1, len(played)):
                step = (wanted[i] > wanted[i - 1]) - (wanted[i] < wanted[i - 1])
                if step == 0:
                    continue
                total += 1
                agree += (played[i] > played[i - 1]) - (played[i] < played[i - 1]) == step
        finally:
            rig.close()
    assert total >= 40 and agree / total >= 0.85, (agree, total)
