"""Regressions where the parts meet: the hand-over contract, the safety nets for inputs that
lie, and the live loop running the same step as the tests. Real conductor, synth, models and
mock pins on the frame clock of tests/rig.py."""

from __future__ import annotations

import threading
import time

import pytest

from piano_buddy.conductor import MAX_PHRASE_NOTES, Conductor, Turn
from piano_buddy.events import InputEvent, InputQueue, Kind
from piano_buddy.phrase import Note

from rig import Rig


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


# --- the hand-over contract --------------------------------------------------------------------
def test_a_full_queue_drops_onsets_but_never_a_release():
    q = InputQueue(onset_limit=4)
    assert all(q.post(InputEvent(Kind.KEY_ON, 60 + i, 0.0, 90)) for i in range(4))
    assert not q.post(InputEvent(Kind.KEY_ON, 70, 0.0, 90))
    assert not q.post(InputEvent(Kind.PRESS, 1, 0.0))
    assert not q.post(InputEvent(Kind.PEDAL, 64, 0.0, 127))
    assert q.post(InputEvent(Kind.KEY_OFF, 60, 0.0))
    assert q.post(InputEvent(Kind.RELEASE, 1, 0.0))
    assert q.post(InputEvent(Kind.PEDAL, 64, 0.0, 0))
    assert q.dropped == 3 and q.qsize() == 7


def test_a_key_off_posted_to_a_full_conductor_still_ends_the_note(rig):
    """Defect: a refused key-off left the key held forever and the AI never answered."""
    c = rig.conductor
    rig.midi(Kind.KEY_ON, 60, 100)
    for i in range(c.queue.onset_limit):          # a flood fills the queue
        c.post(InputEvent(Kind.KEY_ON, 21, rig.now(), 100))
    assert c.post(InputEvent(Kind.KEY_OFF, 60, rig.now()))
    for i in range(c.queue.onset_limit):
        c.post(InputEvent(Kind.KEY_OFF, 21, rig.now()))
    rig.step()
    assert not rig.player_notes and not c.held.busy
    rig.run_until(lambda: c.turn is Turn.AI, limit=rig.cfg.turns.pause + 0.2)


def test_a_key_held_far_too_long_is_released_and_the_ai_answers():
    """The safety net for a key-off that never comes at all (a keyboard that hangs)."""
    rig = Rig(max_hold=6.0)
    try:
        rig.midi(Kind.KEY_ON, 62, 100)
        rig.run(5.9)
        assert rig.player_notes == {62}
        rig.run(0.2)
        assert not rig.player_notes
        assert rig.conductor.stats["held_too_long"] == 1
        rig.run_until(lambda: rig.conductor.turn is Turn.AI, limit=rig.cfg.turns.pause + 0.2)
        rig.midi(Kind.KEY_OFF, 62)                 # the late key-off changes nothing
        assert rig.conductor.stats["errors"] == 0
    finally:
        rig.close()


# --- the pedal -----------------------------------------------------------------------------
def test_a_pedal_stuck_down_with_no_keys_times_out_and_the_ai_answers():
    """Defect: a reversed pedal reads "down" at rest, and the AI never answered."""
    rig = Rig(pedal_timeout=3.0)
    try:
        rig.midi(Kind.PEDAL, 64, 127)
        rig.midi(Kind.KEY_ON, 60, 100)
        rig.run(0.2)
        rig.midi(Kind.KEY_OFF, 60)
        rig.run(2.5)
        assert rig.player_notes == {60}, "sustained while the pedal may be real"
        assert rig.conductor.turn is Turn.PLAYER
        rig.run(0.6)
        assert not rig.player_notes
        assert rig.conductor.stats["pedal_timeouts"] == 1
        rig.run_until(lambda: rig.conductor.turn is Turn.AI, limit=rig.cfg.turns.pause + 0.2)
        rig.run_until(lambda: rig.conductor.turn is Turn.PLAYER, limit=10)
        rig.midi(Kind.KEY_ON, 64, 100)             # while "down", keys no longer sustain
        rig.midi(Kind.KEY_OFF, 64)
        assert not rig.player_notes
        rig.midi(Kind.PEDAL, 64, 0)                # lifted: the next press counts again
        rig.midi(Kind.PEDAL, 64, 127)
        rig.midi(Kind.KEY_ON, 65, 100)
        rig.midi(Kind.KEY_OFF, 65)
        assert rig.player_notes == {65}
    finally:
        rig.close()


def test_the_phrase_is_capped_at_the_source():
    """Defect: with no answer the phrase grew without bound (2152 notes in 30 minutes), and
    the first reply took 215 ms to plan."""
    rig = Rig()
    try:
        c = rig.conductor
        for i in range(3 * MAX_PHRASE_NOTES):
            c._phrase_note(Note(60 + i % 12, i * 0.1, i * 0.1 + 0.05, 90))
        assert len(c.phrase) == MAX_PHRASE_NOTES
        assert c.phrase[-1].start == pytest.approx((3 * MAX_PHRASE_NOTES - 1) * 0.1)
    finally:
        rig.close()


# --- the lost-edge check ---------------------------------------------------------------------
def test_one_bouncy_reading_does_not_end_a_held_note(rig):
    """Defect: a single "up" reading at a level check released a button still held."""
    rig.press(2)
    pin = rig.pins[2]
    for _ in range(10):                     # a bounce that reads up at every other check
        pin._state = True
        rig.run(0.2)
        pin._state = False
        rig.run(0.2)
    assert len(rig.player_notes) == 1
    assert rig.conductor.stats["lost_releases"] == 0
    pin._state = True                       # really up, edge lost: two checks end it
    rig.run(0.45)
    assert not rig.player_notes
    assert rig.conductor.stats["lost_releases"] == 1


# --- one step for the live loop and the tests ------------------------------------------------
class ManualClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_press_queued_at_the_deadline_holds_the_reply_back():
    """Defect: the live loop polled before draining the queue, so a press that arrived just
    before the pause deadline first triggered a reply, then cancelled it (a blip)."""
    rig = Rig()
    try:
        c = rig.conductor
        rig.tap(0)
        rig.tap(1)
        last = c._last_activity
        due = last + rig.cfg.turns.pause
        rig.run(due - rig.now() - 0.003)
        assert c.turn is Turn.PLAYER
        c.post(InputEvent(Kind.PRESS, 3, due - 0.001))   # the edge, just before the deadline
        c.step(0.0, now=due + 0.001)                     # handled after the deadline passed
        assert c.turn is Turn.PLAYER and c.stats["replies"] == 0
        assert c.stats["interrupts"] == 0
    finally:
        rig.close()


def test_the_live_thread_runs_the_same_step():
    """The thread's loop is step() with a timeout: a queued press is handled before time
    passes, whatever the thread was waiting for."""
    calls = []

    class Spy(Conductor):
        def step(self, timeout=0.0, now=None):
            calls.append(timeout)
            return super().step(timeout, now)
    rig = Rig()
    try:
        spy = Spy(rig.cfg, rig.synth, rig.genie, rig.melody, rig.panel, clock=time.monotonic)
        spy.start()
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        spy.stop(timeout=5)
        assert len(calls) >= 3 and all(0 <= t <= Conductor.MAX_WAIT for t in calls)
    finally:
        rig.close()


def test_stop_does_not_touch_the_state_while_the_thread_is_alive(rig, caplog):
    """Defect: stop() ran silence_everything while the conductor thread still ran."""
    c = rig.conductor
    gate = threading.Event()
    entered = threading.Event()
    real_poll = c.poll

    def stuck_poll(now):
        entered.set()
        gate.wait(10)
        return real_poll(now)
    c.poll = stuck_poll
    c.clock = time.monotonic
    silenced = []
    c.silence_everything = lambda: silenced.append(True)
    c.start()
    assert entered.wait(5)
    c.stop(timeout=0.2)
    assert silenced == [], "silenced from another thread while the conductor ran"
    assert "did not stop" in caplog.text
    gate.set()
