"""Turn-taking: the player plays, pauses, the AI answers, the player may interrupt.

The conductor owns the turn state and is the only writer of the synth's commands, the LEDs,
MIDI out and the session record. Its logic is plain methods driven by an injected clock
(:meth:`Conductor.handle` for an input edge, :meth:`Conductor.poll` for time passing), so
tests and the offline demo drive it directly; :meth:`Conductor.run` is the live thread,
whose ``queue.get(timeout)`` up to the next deadline *is* the pause watchdog.

Invariants, checked by the tests in every scenario:
- every note-on the conductor sends is matched by a note-off (or a cancel of its tag);
- the AI never answers while a key is held or the pedal is down, nor before ``pause``;
- a press during the AI's turn silences every AI note at once and starts a new phrase.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Protocol, Sequence

from .config import Config
from .encoding import NUM_BUTTONS, PIANO_HIGHEST, PIANO_LOWEST, button_for_pitch
from .events import InputEvent, Kind
from .phrase import Note, StepNote, plan_reply, unquantize
from .synth import AI as AI_TAG, PLAYER as PLAYER_TAG
from .thread_names import name_this_thread

log = logging.getLogger(__name__)

LEVEL_CHECK_SECONDS = 0.2   # how often held buttons are checked against their pin level
# A safe button-to-key map if the Genie decoder fails mid-show: a C major scale.
FALLBACK_KEYS = (60, 62, 64, 65, 67, 69, 71, 72)


class Turn(str, Enum):
    PLAYER = "player"
    THINKING = "thinking"
    AI = "ai"


class SynthLike(Protocol):
    frame: int

    def note_on(self, pitch: int, velocity: int, tag: int = ..., at_frame: int | None = ...,
                stamp: float | None = ...) -> None: ...
    def note_off(self, pitch: int, tag: int = ..., at_frame: int | None = ...) -> None: ...
    def cancel(self, tag: int) -> None: ...
    def all_notes_off(self) -> None: ...


@dataclass
class _Held:
    pitch: int
    start: float
    velocity: int


@dataclass
class _Reply:
    """The AI's answer in flight: notes in conductor seconds, and how far it has got."""
    notes: list[Note]
    end: float
    started: set[int] = field(default_factory=set)   # indices whose note-on time has come
    ended: set[int] = field(default_factory=set)


class Conductor:
    """The turn-taking state machine and its thread.

    ``genie`` needs ``press(button, time, temperature, allowed) -> pitch`` and ``reset()``;
    ``melody`` needs ``continue_phrase(primer, steps, temperature, primer_steps)``; ``panel``
    needs ``button_led(i, on)``, ``turn(mode)``, ``set_error(on)`` and (for the lost-edge
    check) ``is_pressed(i)``; ``midi_out`` and ``recorder`` are optional.
    """

    def __init__(self, cfg: Config, synth: SynthLike, genie, melody, panel, *,
                 midi_out=None, recorder=None, clock: Callable[[], float] = time.monotonic,
                 sample_rate: int | None = None, queue_size: int = 1024):
        self.cfg, self.synth, self.genie, self.melody = cfg, synth, genie, melody
        self.panel, self.midi_out, self.recorder, self.clock = panel, midi_out, recorder, clock
        self.sample_rate = sample_rate or cfg.audio.sample_rate
        self.queue: queue.Queue[InputEvent] = queue.Queue(maxsize=queue_size)
        self.turn = Turn.PLAYER
        self.allowed = range(cfg.turns.lowest_key, cfg.turns.highest_key + 1)
        self._held: dict[tuple[str, int], _Held] = {}   # ("b", button) or ("k", midi pitch)
        self._holders: dict[int, int] = {}              # pitch -> how many keys hold it
        self._sustained: dict[int, _Held] = {}          # released under the sustain pedal
        self._pedal = False
        self._phrase: list[Note] = []
        self._last_activity: float | None = None
        self._reply: _Reply | None = None
        self._ai_leds: dict[int, int] = {}              # button -> AI notes lighting it
        self.stats = {"events": 0, "dropped_events": 0, "replies": 0, "interrupts": 0,
                      "errors": 0, "empty_replies": 0, "lost_releases": 0,
                      "ignored_events": 0}
        self._last_level_check = float("-inf")
        self.last_notes: list[tuple[str, int]] = []     # (who, pitch), for the live view
        self.heartbeat = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.faults: dict[str, str] = {}   # name -> message; written by any thread
        self._faults_shown = False

    def report_fault(self, name: str, message: str | None) -> None:
        """Raise (message) or clear (None) a fault from any thread; the conductor shows the
        error pattern on the LEDs while any fault stands."""
        if message is None:
            self.faults.pop(name, None)
        else:
            self.faults[name] = message

    def _show_faults(self) -> None:
        shown = bool(self.faults)
        if shown != self._faults_shown:
            self._faults_shown = shown
            self.panel.set_error(shown)

    # --- input side: any thread ----------------------------------------------------------
    def post(self, event: InputEvent) -> bool:
        """Queue an input edge; never blocks (a full queue drops and counts the edge)."""
        try:
            self.queue.put_nowait(event)
            return True
        except queue.Full:
            self.stats["dropped_events"] += 1
            return False

    # --- the logic: conductor thread (or a test) ------------------------------------------
    def handle(self, ev: InputEvent) -> None:
        """Act on one input edge."""
        self.stats["events"] += 1
        if ev.kind is Kind.PRESS:
            if not 0 <= ev.source < NUM_BUTTONS or ("b", ev.source) in self._held:
                return
            self._interrupt_ai(ev.time)
            pitch = self._decode(ev.source, ev.time)
            self._start_note(("b", ev.source), pitch, self.cfg.panel.velocity, ev.time)
            self.panel.button_led(ev.source, True)
        elif ev.kind is Kind.RELEASE:
            if self._end_note(("b", ev.source), ev.time):
                self.panel.button_led(ev.source, False)
        elif ev.kind is Kind.KEY_ON:
            if not PIANO_LOWEST <= ev.source <= PIANO_HIGHEST:
                self.stats["ignored_events"] += 1
                return
            if ("k", ev.source) in self._held:
                self._end_note(("k", ev.source), ev.time)
            self._interrupt_ai(ev.time)
            self._start_note(("k", ev.source), ev.source, max(1, min(127, ev.velocity)),
                             ev.time)
        elif ev.kind is Kind.KEY_OFF:
            self._end_note(("k", ev.source), ev.time)
        elif ev.kind is Kind.PEDAL:
            down = ev.velocity >= 64
            if self._pedal and not down:
                for pitch in list(self._sustained):
                    self._release_pitch(pitch, ev.time)
            self._pedal = down
            self._last_activity = ev.time
        elif ev.kind is Kind.DEVICE:
            log.info("MIDI device %s", "connected" if ev.velocity else "disconnected")

    def poll(self, now: float) -> float | None:
        """Let time pass to ``now``: end the phrase, advance the reply. Returns the seconds
        until the next thing that will happen on its own (None: nothing until an input)."""
        if now - self._last_level_check >= LEVEL_CHECK_SECONDS:
            self._last_level_check = now
            self._release_lost_edges(now)
        if self.turn is Turn.AI and self._reply is not None:
            return self._advance_reply(now)
        if self.turn is Turn.PLAYER and self._phrase and not self._held and not self._pedal \
                and not self._sustained and self._last_activity is not None:
            due = self._last_activity + self.cfg.turns.pause
            if now >= due:
                self._answer(now)
                return 0.0 if self.turn is Turn.AI else None
            return due - now
        if self.turn is Turn.PLAYER and not self._held and self._last_activity is not None:
            idle_until = self._last_activity + self.cfg.turns.session_idle
            if now >= idle_until:
                self._new_visitor()
                return None
            return idle_until - now
        return None

    def _release_lost_edges(self, now: float) -> None:
        """A held button whose pin reads up lost its release edge (bounce, a flaky contact):
        end its note, so no note can stick however the edges arrive."""
        is_pressed = getattr(self.panel, "is_pressed", None)
        if is_pressed is None:
            return
        for kind, button in [k for k in self._held if k[0] == "b"]:
            if not is_pressed(button):
                self.stats["lost_releases"] += 1
                if self._end_note((kind, button), now):
                    self.panel.button_led(button, False)

    # --- player's notes ------------------------------------------------------------------
    def _decode(self, button: int, t: float) -> int:
        try:
            return int(self.genie.press(button, t, self.cfg.turns.genie_temperature,
                                        self.allowed))
        except Exception:
            self.stats["errors"] += 1
            log.exception("Genie decoder failed; using the fallback scale for this press")
            return FALLBACK_KEYS[button]

    def _start_note(self, key: tuple[str, int], pitch: int, velocity: int, t: float) -> None:
        self._held[key] = _Held(pitch, t, velocity)
        self._last_activity = t
        if pitch in self._sustained:       # re-struck under the pedal: end the old one first
            self._release_pitch(pitch, t)
        n = self._holders.get(pitch, 0)
        self._holders[pitch] = n + 1
        if n == 0:
            self.synth.note_on(pitch, velocity, PLAYER_TAG, stamp=t)
            if self.midi_out is not None:
                self.midi_out.note_on(pitch, velocity, ai=False)
        self.last_notes = (self.last_notes + [("player", pitch)])[-8:]

    def _end_note(self, key: tuple[str, int], t: float) -> bool:
        held = self._held.pop(key, None)
        if held is None:
            return False
        self._last_activity = t
        n = self._holders.get(held.pitch, 1) - 1
        if n > 0:
            self._holders[held.pitch] = n
            self._phrase_note(Note(held.pitch, held.start, t, held.velocity))
            return True
        self._holders.pop(held.pitch, None)
        if self._pedal:
            self._sustained[held.pitch] = held
        else:
            self._silence(held.pitch)
            self._phrase_note(Note(held.pitch, held.start, t, held.velocity))
        return True

    def _release_pitch(self, pitch: int, t: float) -> None:
        held = self._sustained.pop(pitch)
        self._silence(pitch)
        self._phrase_note(Note(held.pitch, held.start, t, held.velocity))

    def _silence(self, pitch: int) -> None:
        self.synth.note_off(pitch, PLAYER_TAG)
        if self.midi_out is not None:
            self.midi_out.note_off(pitch, ai=False)

    def _phrase_note(self, note: Note) -> None:
        self._phrase.append(note)
        if self.recorder is not None:
            self.recorder.note(note.pitch, note.velocity, note.start, note.end, ai=False)

    # --- the AI's turn ---------------------------------------------------------------------
    def _answer(self, now: float) -> None:
        """End the phrase and schedule the AI's reply, sample-accurately, in the synth."""
        phrase, self._phrase = self._phrase, []
        self.turn = Turn.THINKING
        self.panel.turn("thinking")
        t = self.cfg.turns
        try:
            plan = plan_reply(phrase, ratio=t.reply_ratio, min_seconds=t.reply_min,
                              max_seconds=t.reply_max, fallback_qpm=t.fallback_qpm)
            steps = self.melody.continue_phrase(plan.primer, plan.reply_steps,
                                                t.temperature, primer_steps=plan.primer_steps)
        except Exception:
            self.stats["errors"] += 1
            log.exception("the melody model failed; the player keeps the turn")
            self.turn = Turn.PLAYER
            self.panel.turn("player")
            return
        if not steps:
            self.stats["empty_replies"] += 1
            self.turn = Turn.PLAYER
            self.panel.turn("player")
            return
        first = min(s.start for s in steps)      # the reply starts at once, not after a rest
        steps = [StepNote(s.pitch, s.start - first, s.end - first) for s in steps]
        start = self.clock()
        frame0 = self.synth.frame
        velocity = self.cfg.panel.velocity
        notes = sorted(unquantize(steps, plan.qpm, origin=start, velocity=velocity))
        sr = self.sample_rate
        for n in notes:
            self.synth.note_on(n.pitch, velocity, AI_TAG,
                               at_frame=frame0 + round((n.start - start) * sr), stamp=now)
            self.synth.note_off(n.pitch, AI_TAG, at_frame=frame0 + round((n.end - start) * sr))
        self._reply = _Reply(notes, max(n.end for n in notes))
        self.turn = Turn.AI
        self.stats["replies"] += 1
        self.panel.turn("ai")
        log.info("AI answers %d notes at %.0f qpm over %.1f s", len(notes), plan.qpm,
                 self._reply.end - start)

    def _advance_reply(self, now: float) -> float | None:
        """Light the LED and send MIDI for each AI note whose time has come; end the turn."""
        r = self._reply
        assert r is not None
        next_due = r.end
        for i, n in enumerate(r.notes):
            if i not in r.started:
                if now >= n.start:
                    r.started.add(i)
                    self._ai_note(n.pitch, True)
                else:
                    next_due = min(next_due, n.start)
            if i in r.started and i not in r.ended:
                if now >= n.end:
                    r.ended.add(i)
                    self._ai_note(n.pitch, False)
                    if self.recorder is not None:
                        self.recorder.note(n.pitch, n.velocity, n.start, n.end, ai=True)
                else:
                    next_due = min(next_due, n.end)
        if now >= r.end:
            self._finish_reply(now)
            return None
        return max(0.0, next_due - now)

    def _ai_note(self, pitch: int, on: bool) -> None:
        b = button_for_pitch(pitch, self.allowed.start, self.allowed.stop - 1)
        count = self._ai_leds.get(b, 0) + (1 if on else -1)
        self._ai_leds[b] = max(0, count)
        self.panel.button_led(b, count > 0)
        if self.midi_out is not None:
            (self.midi_out.note_on(pitch, self.cfg.panel.velocity, ai=True) if on
             else self.midi_out.note_off(pitch, ai=True))
        if on:
            self.last_notes = (self.last_notes + [("ai", pitch)])[-8:]

    def _finish_reply(self, now: float) -> None:
        r, self._reply = self._reply, None
        if r is not None:
            for i, n in enumerate(r.notes):
                if i in r.started and i not in r.ended:
                    self._ai_note(n.pitch, False)
                    if self.recorder is not None:
                        self.recorder.note(n.pitch, n.velocity, n.start, min(now, n.end),
                                           ai=True)
        for b, count in self._ai_leds.items():
            if count:
                self.panel.button_led(b, False)
        self._ai_leds.clear()
        self.turn = Turn.PLAYER
        self._last_activity = now
        self.panel.turn("player")

    def _interrupt_ai(self, t: float) -> None:
        """A press during the AI's turn: every AI note stops now, the player has the turn."""
        if self.turn is Turn.PLAYER:
            return
        self.synth.cancel(AI_TAG)
        if self.midi_out is not None:
            self.midi_out.all_notes_off()
        self.stats["interrupts"] += 1
        self._finish_reply(t)

    def _new_visitor(self) -> None:
        """A long silence: the next press starts a fresh phrase for whoever comes next."""
        self._last_activity = None
        try:
            self.genie.reset()
        except Exception:
            log.exception("Genie reset failed")
        if self.recorder is not None:
            self.recorder.end_session()

    # --- shutdown --------------------------------------------------------------------------
    def silence_everything(self) -> None:
        """All notes off, everywhere: synth, MIDI out, LEDs. Safe to call twice."""
        now = self.clock()
        if self.turn is not Turn.PLAYER:
            self._interrupt_ai(now)
        for key in list(self._held):
            self._end_note(key, now)
        self._pedal = False
        for pitch in list(self._sustained):
            self._release_pitch(pitch, now)
        self._phrase.clear()            # a panic or a shutdown: no reply follows
        self._last_activity = None
        self.synth.all_notes_off()
        if self.midi_out is not None:
            self.midi_out.all_notes_off()
        for i in range(NUM_BUTTONS):
            self.panel.button_led(i, False)
        self.panel.turn("player")
        if self.recorder is not None:
            self.recorder.end_session()

    # --- state for tests and the view ------------------------------------------------------
    @property
    def held_pitches(self) -> set[int]:
        return set(self._holders) | set(self._sustained)

    @property
    def phrase(self) -> Sequence[Note]:
        return tuple(self._phrase)

    def drain(self, now: float | None = None) -> None:
        """Handle every queued edge, then let time pass (offline demo and tests)."""
        while True:
            try:
                ev = self.queue.get_nowait()
            except queue.Empty:
                break
            self._safely(self.handle, ev)
        self._safely(self.poll, self.clock() if now is None else now)
        self._safely(self._show_faults)

    def _safely(self, fn, *args):
        try:
            return fn(*args)
        except Exception:   # the turn loop must outlive any bug in one edge
            self.stats["errors"] += 1
            log.exception("conductor error (recovered)")
            return None

    # --- the live thread -------------------------------------------------------------------
    MAX_WAIT = 0.05   # the heartbeat's period: the supervisor sees a hung conductor

    def run(self) -> None:
        name_this_thread("pb-conductor")
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            self._safely(self._show_faults)
            wait = self._safely(self.poll, self.clock())
            wait = self.MAX_WAIT if wait is None else min(max(wait, 0.0), self.MAX_WAIT)
            try:
                ev = self.queue.get(timeout=wait)
            except queue.Empty:
                continue
            self._safely(self.handle, ev)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="conductor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread, then silence everything from this (now the only) thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.silence_everything()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
