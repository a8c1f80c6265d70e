"""Turn-taking: the player plays, pauses, the AI answers, the player may interrupt.

The conductor is the turn state machine and nothing else. What the player holds is kept by
:class:`~piano_buddy.held_notes.HeldNotes`, the reply as it plays by
:class:`~piano_buddy.reply_timeline.ReplyTimeline`, and every note event besides the synth's
goes to :class:`~piano_buddy.outputs.Outputs` (MIDI out, the record, the live view), each
output isolated. The modes keep their own logic and state - the held combinations, small
hands and the creativity bar (:mod:`~piano_buddy.modes`), attract mode
(:mod:`~piano_buddy.attract`), the copy-me game (:mod:`~piano_buddy.copy_game`), the
accompaniment (:mod:`~piano_buddy.harmony`) - and the conductor only says when in the turn
each acts; their phrases and cues play through the one reply path (``_play_reply``), the
live accompaniment through the Accompanist. Its logic is plain methods driven by an injected clock; :meth:`step` is one
turn of the loop - wait for an edge up to the next deadline, handle every queued edge, then
let time pass - and it is the same step live (:meth:`run`), in the tests and in the demo
(:meth:`drain`). The wait up to the next deadline *is* the pause watchdog.

Invariants, checked by the tests in every scenario:
- every note-on the conductor sends is matched by a note-off (or a cancel of its tag);
- the AI never answers while a key is held or the pedal is down, nor before ``pause``;
- a press during the AI's turn silences every AI note at once and starts a new phrase.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from enum import Enum
from typing import Callable, Protocol, Sequence

from .attract import Attract
from .config import Config
from .encoding import NUM_BUTTONS, PIANO_HIGHEST, PIANO_LOWEST, button_for_pitch
from .errorlog import ErrorLog
from .events import InputEvent, InputQueue, Kind
from .held_notes import HeldNotes
from .copy_game import GAME_QPM, HAPPY_CUE, TRY_AGAIN_CUE, CopyMeGame
from .harmony import REPLY_ACCOMPANIMENT_TAG, Accompanist
from .modes import (COPY_GAME_COMBO, CUE_QPM, CUE_VELOCITY, HARMONY_COMBO,
                    SMALL_HANDS_COMBO, STYLE_COMBO, ComboWatcher, Creativity, LevelBar,
                    active_buttons, cue_for, nearest_active)
from .outputs import Outputs, RecentNotes
from .phrase import Note, StepNote, plan_reply, unquantize
from .reply_timeline import ReplyTimeline
from .styles import cue_and_lamps as style_cue_and_lamps
from .synth import AI as AI_TAG, PLAYER as PLAYER_TAG
from .thread_names import name_this_thread

log = logging.getLogger(__name__)

LEVEL_CHECK_SECONDS = 0.2   # how often held buttons are checked against their pin level
LOST_EDGE_READINGS = 2      # consecutive "up" readings that end a held button's note
MAX_PHRASE_NOTES = 256      # the phrase keeps its newest notes (the primer uses fewer)
# A safe button-to-key map if the Genie decoder fails mid-show: a C major scale.
FALLBACK_KEYS = (60, 62, 64, 65, 67, 69, 71, 72)
# Attract mode's invitation: the melody model continues a rising C major triad (quarter notes
# on the 16th-note grid) for INVITATION_STEPS, at INVITATION_QPM.
INVITATION_PRIMER = (StepNote(60, 0, 4), StepNote(64, 4, 8), StepNote(67, 8, 12))
INVITATION_STEPS, INVITATION_QPM = 16, 100.0


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


class Conductor:
    """The turn-taking state machine and its thread.

    ``genie`` needs ``press(button, time, temperature, allowed, exclude) -> pitch`` and
    ``reset()``;
    ``melody`` needs ``continue_phrase(primer, steps, temperature, primer_steps, bar)``;
    ``panel`` needs ``button_led(i, on)``, ``turn(mode)``, ``set_error(on)`` and (for the
    lost-edge check) ``is_pressed(i)``. ``outputs`` receives every note besides the synth's
    (``midi_out`` and ``recorder`` are shorthands that build it). ``copy_me(notes) ->
    buttons`` chooses the LED that shows each note of a reply: the box passes the Genie
    encoder's buttons, checked through a planning decoder (``assembly.Models.copy_me``);
    without it, the button whose eighth of the key range holds the pitch. After each reply
    the decoder starts afresh, as the plan assumed, so pressing the lit buttons plays the
    reply's shape.
    """

    def __init__(self, cfg: Config, synth: SynthLike, genie, melody, panel, *,
                 outputs: Outputs | None = None, midi_out=None, recorder=None,
                 copy_me: Callable[[Sequence[Note]], Sequence[int]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sample_rate: int | None = None, queue_size: int = 1024):
        self.cfg, self.synth, self.genie, self.melody = cfg, synth, genie, melody
        self.panel, self.clock = panel, clock
        self.errors = ErrorLog(log, "recovered; the turn loop carries on")
        self.recent = RecentNotes()
        if outputs is None:
            outputs = Outputs(live=[midi_out], records=[recorder])
        outputs.live = [*outputs.live, self.recent]
        self.outputs = outputs
        self.copy_me = copy_me or self._band_buttons
        self.sample_rate = sample_rate or cfg.audio.sample_rate
        self.queue = InputQueue(onset_limit=queue_size)
        self.turn = Turn.PLAYER
        self.allowed = range(cfg.turns.lowest_key, cfg.turns.highest_key + 1)
        t = cfg.turns
        self.held = HeldNotes(sound_on=self._sound_on, sound_off=self._sound_off,
                              finished=self._phrase_note, max_hold=t.max_hold,
                              pedal_timeout=t.pedal_timeout)
        self._phrase: collections.deque[Note] = collections.deque(maxlen=MAX_PHRASE_NOTES)
        self._last_activity: float | None = None
        self._idle_since: float | None = clock()     # the last play (attract mode counts)
        self.reply: ReplyTimeline | None = None
        self._inviting = False                       # the reply playing is an invitation
        a = cfg.attract
        self.attract = Attract(a.after_minutes * 60, a.phrase_every_minutes * 60,
                               panel.button_led, panel.turn)
        self.small_hands = cfg.panel.small_hands
        self.active_buttons = active_buttons(self.small_hands)
        self.attract.lamps = self.active_buttons
        self.combos = ComboWatcher([SMALL_HANDS_COMBO, COPY_GAME_COMBO, HARMONY_COMBO,
                                     STYLE_COMBO])
        self.harmony_on = cfg.harmony.enabled
        self.accompanist = Accompanist(synth, cfg.harmony.level, 60.0 / cfg.turns.fallback_qpm,
                                       self.sample_rate)
        self.game: CopyMeGame | None = CopyMeGame() if cfg.turns.mode == "copy" else None
        self._then: Callable[[float], None] | None = None   # after this reply, if it ends
        self.creativity = Creativity(cfg.turns.creativity_low, cfg.turns.creativity_high)
        self.bar = LevelBar(panel.button_led, lambda b: self.held.holds(("b", b)))
        self._stats = {"events": 0, "replies": 0, "interrupts": 0, "empty_replies": 0,
                       "lost_releases": 0, "ignored_events": 0, "faults": 0,
                       "invitations": 0, "mode_changes": 0, "copies_right": 0,
                       "copies_wrong": 0, "creativity_changes": 0}
        self._last_level_check = float("-inf")
        self._up_readings: dict[int, int] = {}          # held button -> "up" readings in a row
        self.heartbeat = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.faults: dict[str, str] = {}   # name -> message; written by any thread
        self._faults_shown = False

    @property
    def stats(self) -> dict[str, int]:
        return {**self._stats, "errors": self.errors.count,
                "dropped_events": self.queue.dropped,
                "held_too_long": self.held.expired_keys,
                "pedal_timeouts": self.held.pedal_timeouts,
                "output_errors": self.outputs.errors.count}

    @property
    def last_notes(self) -> list[tuple[str, int]]:
        """(who, pitch) of the last few notes, for the live view."""
        return self.recent.notes

    def report_fault(self, name: str, message: str | None) -> None:
        """Raise (message) or clear (None) a fault from any thread; the conductor shows the
        error pattern on the LEDs while any fault stands."""
        if message is None:
            self.faults.pop(name, None)
        else:
            if name not in self.faults:
                self._stats["faults"] += 1
            self.faults[name] = message

    def _show_faults(self) -> None:
        shown = bool(self.faults)
        if shown != self._faults_shown:
            self._faults_shown = shown
            self.panel.set_error(shown)

    # --- input side: any thread (the EventSink contract of events.py) ----------------------
    def post(self, event: InputEvent) -> bool:
        """Queue an input edge: never blocks; only an onset is dropped, when the queue is
        full (False); a release is always taken."""
        return self.queue.post(event)

    # --- the logic: conductor thread (or a test) ------------------------------------------
    def handle(self, ev: InputEvent) -> None:
        """Act on one input edge."""
        self._stats["events"] += 1
        if ev.kind is Kind.PRESS:
            if not 0 <= ev.source < NUM_BUTTONS or self.held.holds(("b", ev.source)):
                return
            self.combos.press(ev.source, ev.time)
            self.attract.stop()
            if ev.source not in self.active_buttons:    # small hands: this one is unused
                self._stats["ignored_events"] += 1
                self._idle_since = ev.time               # but somebody is there
                return
            self._interrupt_ai(ev.time)
            self._last_activity = ev.time
            pitch = self._decode(ev.source, ev.time)
            if self.game is not None:
                self.game.press(ev.source, pitch, ev.time)
            self.held.press(("b", ev.source), pitch, self.cfg.panel.velocity, ev.time)
            self._up_readings.pop(ev.source, None)
            self.panel.button_led(ev.source, True)
        elif ev.kind is Kind.RELEASE:
            if 0 <= ev.source < NUM_BUTTONS:
                self.combos.release(ev.source, ev.time)
            if self.held.release(("b", ev.source), ev.time):
                self._last_activity = ev.time
                self.panel.button_led(ev.source, False)
        elif ev.kind is Kind.KEY_ON:
            if not PIANO_LOWEST <= ev.source <= PIANO_HIGHEST:
                self._stats["ignored_events"] += 1
                return
            self.attract.stop()
            self._interrupt_ai(ev.time)
            self._last_activity = ev.time
            if self.game is not None and not self.held.holds(("k", ev.source)):
                self.game.press(None, ev.source, ev.time)
            self.held.press(("k", ev.source), ev.source, max(1, min(127, ev.velocity)),
                            ev.time)
        elif ev.kind is Kind.KEY_OFF:
            if self.held.release(("k", ev.source), ev.time):
                self._last_activity = ev.time
        elif ev.kind is Kind.PEDAL:
            self.held.pedal(ev.velocity >= 64, ev.time)
            self._last_activity = ev.time
        elif ev.kind is Kind.KNOB:
            self.attract.stop()
            self._idle_since = ev.time
            level = self.creativity.turn(ev.source)
            self._stats["creativity_changes"] += 1
            self.bar.show(self.creativity.lamps(self.active_buttons), ev.time)
            log.info("creativity %d of 8 (x%.2f)", level + 1, self.creativity.factor)
        elif ev.kind is Kind.DEVICE:
            log.info("MIDI device %s", "connected" if ev.velocity else "disconnected")

    def poll(self, now: float) -> float | None:
        """Let time pass to ``now``: end the phrase, advance the reply. Returns the seconds
        until the next thing that will happen on its own (None: nothing until an input)."""
        if now - self._last_level_check >= LEVEL_CHECK_SECONDS:
            self._last_level_check = now
            self._release_lost_edges(now)
        for kind, source in self.held.expire(now):
            if kind == "b":
                self._stats["lost_releases"] += 1
                self.panel.button_led(source, False)
        waits = []
        bar_due = self.bar.poll(now)
        if bar_due is not None:
            waits.append(bar_due)
        combo_due, fired = self.combos.poll(now)
        if fired == SMALL_HANDS_COMBO:
            self._switch_small_hands(now)
        elif fired == COPY_GAME_COMBO:
            self._switch_game(now)
        elif fired == HARMONY_COMBO:
            self._switch_harmony(now)
        elif fired == STYLE_COMBO:
            self._switch_style(now)
        elif combo_due is not None:
            waits.append(combo_due)
        hold_due = self.held.next_deadline()
        if hold_due is not None:
            waits.append(max(0.0, hold_due - now))
        if self.turn is Turn.AI and self.reply is not None:
            wait = self.reply.advance(now)
            if wait is None:
                self._finish_reply(now)
                then, self._then = self._then, None
                if then is not None:
                    then(now)
                    return 0.0
            else:
                waits.append(wait)
        elif self.turn is Turn.PLAYER and self._last_activity is not None \
                and not self.held.busy:
            if self._phrase:
                due = self._last_activity + self.cfg.turns.pause
                if now >= due:
                    self._judge_copy(now) if self.game is not None else self._answer(now)
                    return 0.0 if self.turn is Turn.AI else None
                waits.append(due - now)
            else:
                idle_until = self._last_activity + self.cfg.turns.session_idle
                if now >= idle_until:
                    self._new_visitor()
                else:
                    waits.append(idle_until - now)
        elif self.turn is Turn.PLAYER and not self.held.busy:   # nobody here: attract mode
            wait, invite = self.attract.poll(now, self._idle_since)
            if invite:
                self._invite(now)
                return 0.0
            if wait is not None:
                waits.append(wait)
        return min(waits) if waits else None

    def _release_lost_edges(self, now: float) -> None:
        """A held button whose pin reads up at two checks in a row lost its release edge (a
        flaky contact): end its note, so no note can stick however the edges arrive. One
        "up" reading is not enough: a bouncing contact reads up for a moment while held."""
        is_pressed = getattr(self.panel, "is_pressed", None)
        if is_pressed is None:
            return
        for kind, button in [k for k in self.held.keys() if k[0] == "b"]:
            if is_pressed(button):
                self._up_readings.pop(button, None)
                continue
            n = self._up_readings[button] = self._up_readings.get(button, 0) + 1
            if n >= LOST_EDGE_READINGS:
                self._up_readings.pop(button, None)
                self._stats["lost_releases"] += 1
                if self.held.release((kind, button), now):
                    self.panel.button_led(button, False)

    # --- player's notes ------------------------------------------------------------------
    def _decode(self, button: int, t: float) -> int:
        try:
            # keys already sounding are left out, so every press makes a new sound
            return int(self.genie.press(button, t, self.cfg.turns.genie_temperature,
                                        self.allowed, exclude=self.held.pitches))
        except Exception as exc:
            self.errors.record("the Genie decoder (fallback scale for this press)", exc)
            return FALLBACK_KEYS[button]

    def _sound_on(self, pitch: int, velocity: int, t: float) -> None:
        self.synth.note_on(pitch, velocity, PLAYER_TAG, stamp=t)
        self.outputs.note_on(pitch, velocity, False)
        if self.harmony_on and self.game is None:
            try:
                self.accompanist.melody_note(pitch, velocity, t)
            except Exception as exc:
                self.errors.record("the harmonizer (no accompaniment for this note)", exc)

    # --- harmony (harmony.py) ------------------------------------------------------------
    def _switch_harmony(self, now: float) -> None:
        """Buttons 7 and 8 held together: the accompaniment on (or off), with a cue."""
        self._end_combination(now)
        self._stats["mode_changes"] += 1
        self.harmony_on = not self.harmony_on
        self.accompanist.reset()
        log.info("harmony %s", "on" if self.harmony_on else "off")
        cue = cue_for(self.active_buttons, self.harmony_on)
        self._cue([p for p, _b in cue.notes], [b for _p, b in cue.notes], now)

    # --- melody styles (styles.py) --------------------------------------------------------
    def _switch_style(self, now: float) -> None:
        """Buttons 2 and 7 held together: the next melody style, with its two-note cue and
        then its lamp pattern."""
        self._end_combination(now)
        self._stats["mode_changes"] += 1
        style = self.melody.cycle()
        cue, lamps = style_cue_and_lamps(style)
        lamps = [b for b in lamps if b in self.active_buttons] or \
            [nearest_active(lamps[0], self.active_buttons)]
        log.info("melody style: %s", style)
        self._cue(list(cue), [lamps[0], lamps[-1]], now)
        self._then = lambda t: self.bar.show(lamps, t)

    def _sound_off(self, pitch: int) -> None:
        self.synth.note_off(pitch, PLAYER_TAG)
        self.outputs.note_off(pitch, False)

    def _phrase_note(self, note: Note) -> None:
        self._phrase.append(note)
        self.outputs.note(note.pitch, note.velocity, note.start, note.end, False)

    # --- the AI's turn ---------------------------------------------------------------------
    def _answer(self, now: float) -> None:
        """End the phrase and schedule the AI's reply, sample-accurately, in the synth."""
        phrase = list(self._phrase)
        self._phrase.clear()
        self.accompanist.stop()
        self.turn = Turn.THINKING
        self.panel.turn("thinking")
        t = self.cfg.turns
        factor = self.creativity.factor      # button 8 + the knob, within the config's bounds
        try:
            plan = plan_reply(phrase, ratio=min(4.0, max(0.1, t.reply_ratio * factor)),
                              min_seconds=min(t.reply_max, max(0.5, t.reply_min * factor)),
                              max_seconds=t.reply_max, fallback_qpm=t.fallback_qpm)
            steps = self.melody.continue_phrase(plan.primer, plan.reply_steps,
                                                min(2.0, max(0.05, t.temperature * factor)),
                                                primer_steps=plan.primer_steps, bar=plan.bar)
        except Exception as exc:
            self.errors.record("the melody model (the player keeps the turn)", exc)
            self.turn = Turn.PLAYER
            self.panel.turn("player")
            return
        if not steps:
            self._stats["empty_replies"] += 1
            self.turn = Turn.PLAYER
            self.panel.turn("player")
            return
        self._play_reply(steps, plan.qpm, self.cfg.panel.velocity, now,
                         harmony=self.harmony_on and self.cfg.harmony.reply)
        self._stats["replies"] += 1
        log.info("AI answers %d notes at %.0f qpm over %.1f s (style %s)",
                 len(self.reply.notes), plan.qpm, self.reply.end - self.reply.notes[0].start,
                 self.melody.answered_by)

    def _invite(self, now: float) -> None:
        """Attract mode's short quiet phrase, played and shown like a reply."""
        a, t = self.cfg.attract, self.cfg.turns
        try:
            steps = self.melody.continue_phrase(list(INVITATION_PRIMER), INVITATION_STEPS,
                                                t.temperature, primer_steps=12)
        except Exception as exc:
            self.errors.record("the melody model (no invitation this time)", exc)
            return
        if steps:
            self._inviting = True
            self._play_reply(steps, INVITATION_QPM, a.velocity, now)
            self._stats["invitations"] += 1

    def _end_combination(self, now: float) -> None:
        """A held combination fired: its own notes end, and it is not a phrase to answer."""
        self._interrupt_ai(now)
        self._release_held(now)
        self._phrase.clear()
        if self.game is not None:
            self.game.played = []

    def _release_held(self, now: float) -> None:
        """Every held key's note ends now, and the held buttons' lamps go dark."""
        for key in list(self.held.keys()):
            if key[0] == "b":
                self.panel.button_led(key[1], False)
        self.held.release_everything(now)

    def _cue(self, pitches: Sequence[int], buttons: Sequence[int], now: float) -> None:
        """The box talking (a mode switched, a verdict): quick notes whose lamps sweep over
        ``buttons``; played like a reply, without MIDI out or recording."""
        buttons = [buttons[min(i, len(buttons) - 1)] for i in range(len(pitches))]
        self._play_reply([StepNote(p, i, i + 1) for i, p in enumerate(pitches)], CUE_QPM,
                         CUE_VELOCITY, now, buttons=buttons, outputs=Outputs())

    # --- the copy-me game (copy_game.py) ----------------------------------------------------
    def _switch_game(self, now: float) -> None:
        """Buttons 1 and 2 held together: the copy-me game starts (or stops)."""
        self._end_combination(now)
        self._stats["mode_changes"] += 1
        on = self.game is None
        self.game = CopyMeGame() if on else None
        log.info("copy me: %s", "game on" if on else "game off")
        cue = cue_for(self.active_buttons, on)
        self._cue([p for p, _b in cue.notes], [b for _p, b in cue.notes], now)
        self._then = self._show_task if on else None

    def _show_task(self, now: float) -> None:
        """The AI plays the phrase to copy (a new one, or the same again) and lights it."""
        game = self.game
        if game is None:
            return
        try:
            steps = game.steps if game.task is not None and game.steps else \
                game.next_phrase(self.melody, self.cfg.turns.temperature)
        except Exception as exc:
            self.errors.record("the melody model (no phrase to copy this time)", exc)
            return
        if not steps:
            return
        self._play_reply(steps, GAME_QPM, self.cfg.panel.velocity, now)
        game.set_task(self.reply.notes, self.reply.buttons)

    def _judge_copy(self, now: float) -> None:
        """The child's copy ended (a pause): yes or try again, then the next phrase."""
        self._phrase.clear()
        if self.game.task is None:                # nothing shown yet: show it first
            self.game.played = []
            self._show_task(now)
            return
        right, why = self.game.verdict()
        self._stats["copies_right" if right else "copies_wrong"] += 1
        log.info("copy me: %s (%s); next phrase %d notes", "right" if right else "try again",
                 why, self.game.length)
        if right:
            self._cue(HAPPY_CUE, self.active_buttons, now)
        else:
            self._cue(TRY_AGAIN_CUE, (self.active_buttons[-1], self.active_buttons[0]), now)
        self._then = self._show_task

    def _switch_small_hands(self, now: float) -> None:
        """The outer buttons were held together: eight buttons <-> four, with a cue."""
        self._end_combination(now)
        self.small_hands = not self.small_hands
        self.active_buttons = self.attract.lamps = active_buttons(self.small_hands)
        self._stats["mode_changes"] += 1
        log.info("small hands %s: buttons %s", "on" if self.small_hands else "off",
                 [b + 1 for b in self.active_buttons])
        cue = cue_for(self.active_buttons, self.small_hands)
        self._cue([p for p, _b in cue.notes], [b for _p, b in cue.notes], now)

    def _play_reply(self, steps: Sequence[StepNote], qpm: float, velocity: int,
                    now: float, *, buttons: Sequence[int] | None = None,
                    outputs: Outputs | None = None, harmony: bool = False) -> None:
        """Schedule the notes in the synth to the frame, then follow them on the timeline
        (its lamps: ``buttons``, else the copy-me buttons; its outputs: the box's)."""
        first = min(s.start for s in steps)      # the reply starts at once, not after a rest
        steps = [StepNote(s.pitch, s.start - first, s.end - first) for s in steps]
        start = self.clock()
        frame0 = self.synth.frame
        # onset order (a Note sorts by pitch first): the copy-me encoder reads a melody
        notes = sorted(unquantize(steps, qpm, origin=start, velocity=velocity),
                       key=lambda n: (n.start, n.pitch))
        sr = self.sample_rate
        for n in notes:
            self.synth.note_on(n.pitch, velocity, AI_TAG,
                               at_frame=frame0 + round((n.start - start) * sr), stamp=now)
            self.synth.note_off(n.pitch, AI_TAG, at_frame=frame0 + round((n.end - start) * sr))
        if harmony:
            try:
                self.accompanist.under_reply(notes, qpm, velocity, frame0, start)
            except Exception as exc:
                self.errors.record("the harmonizer (the reply plays alone)", exc)
        if buttons is None:                      # after the schedule: never delays the sound
            buttons = self._copy_me_buttons(notes)
        self.reply = ReplyTimeline(notes, buttons, outputs or self.outputs,
                                   self.panel.button_led, velocity)
        self.turn = Turn.AI
        self.panel.turn("ai")

    def _copy_me_buttons(self, notes: Sequence[Note]) -> list[int]:
        try:
            buttons = [int(b) for b in self.copy_me(notes)]
            if len(buttons) == len(notes) and all(0 <= b < NUM_BUTTONS for b in buttons):
                return [nearest_active(b, self.active_buttons) for b in buttons]
            raise ValueError(f"{len(buttons)} buttons for {len(notes)} notes: {buttons[:8]}")
        except Exception as exc:
            self.errors.record("the copy-me buttons (lit by key band instead)", exc)
            return self._band_buttons(notes)

    def _band_buttons(self, notes: Sequence[Note]) -> list[int]:
        lo, hi = self.allowed.start, self.allowed.stop - 1
        return [nearest_active(button_for_pitch(n.pitch, lo, hi), self.active_buttons)
                for n in notes]

    def _finish_reply(self, now: float) -> None:
        reply, self.reply = self.reply, None
        if reply is not None:
            reply.finish(now)
            try:        # the lit buttons were planned from a fresh decoder: copy from one
                self.genie.reset()
            except Exception as exc:
                self.errors.record("Genie reset", exc)
        self.turn = Turn.PLAYER
        self.panel.turn("player")
        if self._inviting:           # nobody played: the box goes on waiting for a visitor
            self._inviting = False
            self.attract.phrase_over()
        else:
            self._last_activity = now

    def _interrupt_ai(self, t: float) -> None:
        """A press during the AI's turn: every AI note stops now, the player has the turn."""
        if self.turn is Turn.PLAYER:
            return
        self._then = None             # a reply cut short: what was to follow it is dropped
        self.synth.cancel(AI_TAG)
        self.synth.cancel(REPLY_ACCOMPANIMENT_TAG)
        self._stats["interrupts"] += 1
        self._finish_reply(t)

    def _new_visitor(self) -> None:
        """A long silence: the session ends (its recording is written) and the next press
        starts afresh for whoever comes next. The one owner of "session"."""
        self._idle_since, self._last_activity = self._last_activity, None
        self.accompanist.reset()
        if self.game is not None:
            log.info("copy me: game over (a long silence); %d right, %d to try again",
                     self.game.right, self.game.wrong)
            self.game = None
        try:
            self.genie.reset()
        except Exception as exc:
            self.errors.record("Genie reset", exc)
        self.outputs.end_session()

    # --- shutdown --------------------------------------------------------------------------
    def silence_everything(self) -> None:
        """All notes off, everywhere: synth, MIDI out, LEDs. Safe to call twice."""
        now = self.clock()
        if self.turn is not Turn.PLAYER:
            self._interrupt_ai(now)
        self._release_held(now)
        self.attract.stop()
        self.combos.reset()
        self._phrase.clear()            # a panic or a shutdown: no reply follows
        self._last_activity = None
        self.accompanist.stop()
        self.synth.all_notes_off()
        self.outputs.all_notes_off()
        for i in range(NUM_BUTTONS):
            self.panel.button_led(i, False)
        self.panel.turn("player")
        self.outputs.end_session()

    # --- state for tests and the view ------------------------------------------------------
    @property
    def held_pitches(self) -> set[int]:
        return self.held.pitches

    @property
    def phrase(self) -> Sequence[Note]:
        return tuple(self._phrase)

    def step(self, timeout: float = 0.0, now: float | None = None) -> float | None:
        """One turn of the loop: wait up to ``timeout`` for an edge, handle every queued
        edge, then let time pass (to ``now``, default the clock). Edges always come before
        time, so a press just before the pause deadline holds the reply back instead of
        cancelling it at once. Returns poll's wait (None: nothing until an input)."""
        ev = self.queue.get(timeout)
        while ev is not None:
            self._safely(self.handle, ev)
            ev = self.queue.get(0)
        wait = self._safely(self.poll, self.clock() if now is None else now)
        self._safely(self._show_faults)
        return wait

    def drain(self, now: float | None = None) -> None:
        """Handle every queued edge, then let time pass (offline demo and tests)."""
        self.step(0.0, now)

    def _safely(self, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:   # the turn loop must outlive any bug in one edge
            self.errors.record(getattr(fn, "__name__", "conductor"), exc)
            return None

    # --- the live thread -------------------------------------------------------------------
    MAX_WAIT = 0.05   # the heartbeat's period: the supervisor sees a hung conductor

    def run(self) -> None:
        name_this_thread("pb-conductor")
        wait = 0.0
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            timeout = self.MAX_WAIT if wait is None else min(max(wait, 0.0), self.MAX_WAIT)
            wait = self.step(timeout)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="conductor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread, then silence everything from this (now the only) thread. If the
        thread does not stop in time it still owns the conductor's state: only MIDI out (which
        has its own lock) is silenced from here, and the audio device's closing ends the
        rest."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.error("the conductor thread did not stop within %g s; silencing MIDI out "
                          "only", timeout)
                self.outputs.all_notes_off()
                return
        self.silence_everything()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
