"""Attract mode (issue 13, item 5): nobody at the box for a while -> the lamps chase slowly and
a short quiet phrase plays now and then; any press stops it at once and starts a session.
Simulated time through the real conductor, models, synth and mock pins (tests/rig.py)."""

from __future__ import annotations

import dataclasses

from piano_buddy.attract import CHASE_STEP_SECONDS, FIRST_PHRASE_SECONDS
from piano_buddy.conductor import Turn
from piano_buddy.config import Config, from_dict
from piano_buddy.counts import VisitorCounts, read_counts

try:
    from tests.rig import Rig
except ImportError:
    from rig import Rig

AFTER, EVERY = 12.0, 30.0       # seconds, for the test


def attract_rig(after=AFTER, every=EVERY, seed=2, **turns) -> Rig:
    cfg = from_dict({"attract": {"after_minutes": after / 60, "phrase_every_minutes": every / 60,
                                 "velocity": 40},
                     "audio": {"period_frames": 256}})     # fewer blocks per simulated second
    if turns:
        cfg = dataclasses.replace(cfg, turns=dataclasses.replace(cfg.turns, **turns))
    return Rig(cfg, seed=seed)


def lit(rig: Rig) -> list[int]:
    return [i for i, on in enumerate(rig.panel.snapshot()["leds"]) if on]


def test_it_waits_for_the_idle_time_then_chases_one_lamp_at_a_time():
    rig = attract_rig()
    try:
        rig.run(AFTER - 1.0)
        assert not rig.conductor.attract.active and lit(rig) == []
        rig.run(1.2)
        assert rig.conductor.attract.active and rig.panel.snapshot()["turn"] == "attract"
        seen = []
        for _ in range(4):                  # before the first invitation
            seen.append(tuple(lit(rig)))
            rig.run(CHASE_STEP_SECONDS)
        assert all(len(s) == 1 for s in seen), seen
        assert [s[0] for s in seen] == [(seen[0][0] + i) % 8 for i in range(4)]   # a chase
        assert not rig.synth.sounding()
    finally:
        rig.close()


def test_an_invitation_is_short_and_quiet_and_comes_again_every_few_minutes():
    rig = attract_rig()
    try:
        rig.run(AFTER + FIRST_PHRASE_SECONDS + 0.1)
        c = rig.conductor
        assert c.turn is Turn.AI and c.stats["invitations"] == 1
        notes = c.reply.notes
        assert 1 <= len(notes) and notes[-1].end - notes[0].start <= 4.0
        assert {n.velocity for n in notes} == {40}
        rig.run_until(lambda: c.turn is Turn.PLAYER, limit=10)
        assert c.attract.active and c.stats["replies"] == 0        # not a reply to anyone
        rig.run(EVERY)
        assert c.stats["invitations"] == 2
    finally:
        rig.close()


def test_an_invitation_is_quieter_than_play():
    rig = attract_rig()
    try:
        rig.keep_audio = True
        rig.run(AFTER + FIRST_PHRASE_SECONDS + 3.0)
        import numpy as np
        invite_peak = float(np.max(np.abs(np.concatenate(rig.audio))))
        rig.audio.clear()
        for b in (0, 3, 5):
            rig.tap(b)
        play_peak = float(np.max(np.abs(np.concatenate(rig.audio))))
        assert 0 < invite_peak < play_peak * 0.7, (invite_peak, play_peak)
    finally:
        rig.close()


def test_any_press_stops_it_at_once_and_starts_a_fresh_session(tmp_path):
    rig = attract_rig(session_idle=5.0)
    counts = VisitorCounts(tmp_path)
    rig.conductor.outputs.records.append(counts)
    try:
        rig.run(AFTER + FIRST_PHRASE_SECONDS + 0.3)
        c = rig.conductor
        assert c.turn is Turn.AI and rig.ai_notes               # inviting now
        rig.press(6)
        assert not rig.ai_notes, "the invitation must stop at once"
        assert not c.attract.active and c.turn is Turn.PLAYER
        assert lit(rig) == [6] and rig.panel.snapshot()["turn"] == "player"
        assert rig.player_notes                                 # the press itself sounds
        rig.run(0.2)
        rig.release(6)
        rig.run_until(lambda: c.turn is Turn.AI, limit=5)       # and is answered as play
        assert c.stats["replies"] == 1
        rig.run_until(lambda: counts.writes == 1, limit=30)     # then the visitor leaves
        assert read_counts(tmp_path)["visitors"] == 1
        assert read_counts(tmp_path)["presses"] == 1            # invitations are not presses
        rig.run(AFTER + 1.0)
        assert c.attract.active                                 # and the box invites again
    finally:
        rig.close()


def test_a_held_key_or_pedal_keeps_it_off_and_zero_turns_it_off():
    rig = attract_rig()
    try:
        rig.press(2)
        rig.run(AFTER + 5.0)
        assert not rig.conductor.attract.active
    finally:
        rig.close()
    rig = attract_rig(after=0.0)
    try:
        rig.run(60.0)
        assert not rig.conductor.attract.active and rig.conductor.stats["invitations"] == 0
    finally:
        rig.close()


def test_the_default_waits_five_minutes_and_invites_every_three():
    a = Config().attract
    assert (a.after_minutes, a.phrase_every_minutes) == (5.0, 3.0)
