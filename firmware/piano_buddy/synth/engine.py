"""The synth: note commands in from any thread, one int16 block out per ``render()`` call.

Real-time rules of the render path (the audio thread): every array it touches is allocated
here in ``__init__``; each block is a fixed sequence of numpy calls into preallocated
arrays over all voices at once (no per-sample Python loop, no per-voice loop except for
the rare stage changes and commands); no locks (commands come through the lock-free
``CommandQueue``), no logging, no exceptions on a full queue. The box renders 64-frame
blocks, 750 a second, so the number of calls counts as much as their work: ufuncs take
their output positionally (the ``out=`` keyword costs ~0.3 us a call), every operand has
the output's shape and dtype (a broadcast or a cast makes numpy buffer), the views a full
block needs are made once, and the matrix products are ``np.dot`` into C-contiguous
outputs (it calls BLAS directly; ``np.matmul`` costs ~0.4 us more a call at these sizes).

How a block is made: commands are drained at the block's start; the block is then split at
the frames of scheduled commands (``at_frame``) so the AI's notes start on their exact
sample, and each piece ("segment") is rendered by ``_render_segment``:

1. envelopes: every voice's level at the segment's end (one formula; skipped while every
   voice is held or idle) and whether a stage ends in it (a frame known in advance);
2. gains: every row's gain decays by its own factor; times its voice's level, that is the
   gain at the segment's end, and the change from its start: a small matrix W;
3. oscillators: table phase for every frame and row from one matmul, rounded to the table
   index with a magic constant (no float-to-int conversion), then one gather of
   interleaved (midpoint, slope) pairs weighted by [1, fraction - 0.5], always over all
   table rows, so every operand has the same shape and the cost is the same whether one
   key or sixteen are down;
4. mix: ``pairs @ W^T`` sums all rows' samples and slope parts with their gains and gain
   changes in one BLAS call; the per-sample gain ramp is one multiply and a tiny matmul.
5. strikes, only while one sounds (the first ~75 ms of a note; after that its burst is
   zeros): one gather of every voice's next burst samples (a burst plays one sample per
   frame: no phase, no interpolation) and one small matmul with their gains, added before
   the ramp. Held notes then cost their table rows alone; the worst case, a strike always
   sounding, costs about what it did when the strike was a table row.
The room (``reverb.Reverb``, when enabled), then the volume knob, compressor, limiter and
the int16 conversion follow (``limiter.OutputStage``).
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from ..errors import ConfigError
from . import timbre
from .commands import (ALL_OFF, AT, CANCEL, IMMEDIATE, KIND, NOTE_OFF, NOTE_ON, PITCH, SEQ,
                       STAMP, TAG, VELOCITY, CommandQueue, ReleaseFlags)
from .limiter import OutputStage
from .reverb import Reverb
from .voices import ATTACK, HELD, IDLE, RELEASE, VoiceBank
from .wavetables import build_wavetables

PLAYER = 0          # notes from the buttons and MIDI keyboards
AI = 1              # the model's reply
MAX_TAGS = 8
STARTED_RING = 64   # how many recent note starts ``started()`` remembers
# 1.5 * 2**23: a float32 in [2**23, 2**24) has a spacing of exactly 1, so x + _MAGIC rounds x
# to an integer and the float's low mantissa bits hold it (two's complement): the table
# index without a float-to-int conversion
_MAGIC = 1.5 * 2.0 ** 23
_WRAP_FRAMES = 256  # phases are wrapped into their tables at least every this many frames
_FLUSH_EVERY = 64   # blocks: row gains under _TINY are set to zero (no denormals, ever)
_TINY = 1e-30

_STAT_KEYS = ("blocks", "note_ons", "note_offs", "retriggers", "steals", "replaced_pending",
              "dropped_commands", "flagged_releases", "ignored_notes", "late_events",
              "quantized_events", "cancels", "all_notes_offs", "auto_releases",
              "limited_blocks", "clipped_blocks")


class Synth:
    """A polyphonic wavetable piano. See the package docstring for the threading contract.
    ``reverb`` / ``reverb_amount`` add the small room (config ``audio.reverb``,
    ``audio.reverb_amount``); it is off by default, so existing callers are unchanged."""

    def __init__(self, sample_rate: int = 48000, block_frames: int = 128, channels: int = 2,
                 voices: int = 16, ceiling_dbfs: float = -6.0, gain: float = 1.0,
                 queue_size: int = 512, max_hold_s: float | None = 60.0, max_splits: int = 8,
                 reverb: bool = False, reverb_amount: float = 0.25):
        checks = (("sample_rate", sample_rate, 8000 <= sample_rate <= 192000, "8000..192000"),
                  ("block_frames", block_frames, 16 <= block_frames <= 8192, "16..8192"),
                  ("channels", channels, 1 <= channels <= 8, "1..8"),
                  ("voices", voices, 1 <= voices <= 128, "1..128"),
                  ("ceiling_dbfs", ceiling_dbfs, -60.0 <= ceiling_dbfs <= 0.0, "-60..0"),
                  ("gain", gain, 0.0 <= gain <= 1.0, "0..1"),
                  ("queue_size", queue_size, 1 <= queue_size <= 1 << 20, "1..1048576"),
                  ("max_splits", max_splits, 0 <= max_splits <= block_frames, "0..block_frames"),
                  ("reverb_amount", reverb_amount, 0.0 <= reverb_amount <= 1.0, "0..1"))
        for name, value, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"synth {name} = {value!r} is out of range (allowed {allowed})")
        self.sample_rate = int(sample_rate)
        self.block_frames = F = int(block_frames)
        self.channels = int(channels)
        self.n_voices = int(voices)
        self.max_splits = int(max_splits)
        self.bank = build_wavetables(self.sample_rate)
        self.voices = vb = VoiceBank(self.n_voices, self.bank, self.channels, F)
        self.output = OutputStage(self.sample_rate, F, self.channels, ceiling_dbfs, gain)
        self.reverb = Reverb(self.sample_rate, F, self.channels,
                             amount=float(reverb_amount) if reverb else 0.0)
        self._queue = CommandQueue(queue_size)
        self._flags = ReleaseFlags(MAX_TAGS)
        self._scheduled: list[tuple] = []        # heap of scheduled commands, audio thread only
        self._max_scheduled = 4 * int(queue_size)
        self.frame = 0
        self.stats = dict.fromkeys(_STAT_KEYS, 0)
        self._max_hold = None if max_hold_s is None else int(max_hold_s * self.sample_rate)
        self._next_hold_check = 0
        # started(): a ring of (stamp, frame, pitch, tag) of recent note starts
        self._started_stamp = np.full(STARTED_RING, np.nan)
        self._started_frame = np.zeros(STARTED_RING, dtype=np.int64)
        self._started_pitch = np.zeros(STARTED_RING, dtype=np.int16)
        self._started_tag = np.zeros(STARTED_RING, dtype=np.int16)
        self._started_count = 0
        # ---- render buffers (allocated once; see _render_segment) ----
        R = vb.rows_per_voice
        rows = R * self.n_voices
        mc = vb.gain.shape[0]                     # mix channels: 1 or 2
        f32 = np.float32
        # the mixing weights, a ring of two: W[k] = [gain at the segment's start (mc rows);
        # its change over the segment (mc rows)], each gain twice (for a row's sample and
        # its slope x fraction, interleaved as the table's pairs are)
        self._w = np.zeros((2, 2 * mc, 2 * rows), dtype=f32)
        self._w_slot = 0
        # views: the gains at a segment's end, shaped to be filled by one broadcast multiply
        self._w_end = [self._w[k, :mc].reshape(mc, self.n_voices, 2 * R) for k in (0, 1)]
        self._gain_rows = vb.gain2.reshape(mc, self.n_voices, 2 * R)
        self._level_rows = vb.level.reshape(1, self.n_voices, 1)
        self._row_decay_n2 = np.zeros((mc, rows, 2), dtype=f32)
        self._level_full = np.zeros((mc, self.n_voices, 2 * R), dtype=f32)
        self._ramp2 = np.vstack([np.arange(F), np.ones(F)]).T.astype(f32).copy()
        # y = [start part, change part] per frame; mix = (y x [1, ramp]) @ [I; I], where the
        # ramp is (t + 1) / n for a full block and t + 1 for a part (its change is per frame)
        t1 = np.arange(1, F + 1, dtype=f32)[:, None]
        self._ramp_full = np.hstack([np.ones((F, mc), dtype=f32), np.repeat(t1 / F, mc, axis=1)])
        self._ramp_part = np.hstack([np.ones((F, mc), dtype=f32), np.repeat(t1, mc, axis=1)])
        self._sum_parts = np.vstack([np.eye(mc, dtype=f32)] * 2)
        self._decay_n = np.zeros(self.n_voices, dtype=f32)     # a partial segment's decays
        self._row_decay_n = np.zeros(rows, dtype=f32)
        self._step_n = np.zeros(rows, dtype=f32)
        self._magic = np.float32(_MAGIC)
        self._wrap_every = max(1, _WRAP_FRAMES // F)
        self._weights = np.ones((F, rows, 2), dtype=f32)          # [1, phase fraction - 0.5]
        self._full = (np.zeros((F, rows), dtype=f32),             # phase - 0.5
                      np.zeros((F, rows), dtype=f32),             # + magic, then its floor
                      np.zeros((F, rows), dtype=np.int32),        # table index ...
                      np.zeros((F, rows), dtype=np.intp),         # ... as numpy's take wants it
                      vb.offset_frames,                           # table start per row
                      vb.mask_frames,                             # table size - 1 per row
                      np.zeros((F, rows, 2), dtype=f32),          # (sample, slope) pairs
                      np.zeros((F, 2 * mc), dtype=f32))           # mixed: gain, change parts
        self._tiny = np.zeros((mc, rows, 2), dtype=bool)
        # the strike stage: its own ring of weights (gain at the start; change), the frame
        # offsets of a block, the gathered samples and their mix
        V = self.n_voices
        self._ws = np.zeros((2, 2 * mc, V), dtype=f32)
        self._ws_t = [self._ws[k].T for k in (0, 1)]
        self._ws_parts = [(self._ws[k], self._ws[k, :mc], self._ws[k, mc:], self._ws[1 - k, :mc])
                          for k in (0, 1)]
        self._ws_slot = 0
        self._strike_on = False
        self._level_strike = self._level_full[:, :, 0]            # levels, (mc, voices)
        self._s_x = np.zeros((F, V), dtype=f32)
        self._s_y = np.zeros((F, 2 * mc), dtype=f32)
        self._tiny_strike = np.zeros((mc, V), dtype=bool)
        self._zero = np.zeros((), dtype=f32)
        self._mix = np.zeros((F, mc), dtype=f32)
        self._w_t = [self._w[k].T for k in (0, 1)]
        # per slot: (this slot's start gains, its change, the other slot's start gains)
        self._w_parts = [(self._w[k, :mc], self._w[k, mc:], self._w[1 - k, :mc]) for k in (0, 1)]
        ph, m, i32, idx, offset, mask, pairs, y = self._full
        self._views = (ph, m, m.view(np.int32), i32, idx, offset, mask, pairs,
                       pairs.reshape(F, -1), self._weights[:, :, 1], y, self._ramp_full)
        self._block = np.zeros((F, self.channels), dtype=np.int16)
        self._starts: list[int] = []

    # ==== commands: any thread =============================================================
    def note_on(self, pitch: int, velocity: int, tag: int = PLAYER, at_frame: int | None = None,
                stamp: float | None = None) -> None:
        """Start a note (velocity 1..127; 0 means note-off, as in MIDI). Never blocks."""
        try:
            pitch, velocity, tag = int(pitch), int(velocity), self._check_tag(tag)
            at = IMMEDIATE if at_frame is None else max(0, int(at_frame))
        except (TypeError, ValueError, OverflowError):
            self.stats["ignored_notes"] += 1
            return
        if velocity <= 0:
            self.note_off(pitch, tag, at_frame)
            return
        if not timbre.LOWEST_PITCH <= pitch <= timbre.HIGHEST_PITCH:
            self.stats["ignored_notes"] += 1
            return
        try:
            stamp = None if stamp is None else float(stamp)
        except (TypeError, ValueError):
            stamp = None
        cmd = (at, self._queue.next_seq(), NOTE_ON, pitch, min(velocity, 127), tag, stamp)
        if not self._queue.put(cmd):
            self.stats["dropped_commands"] += 1    # a lost note-on is silence, never a stuck note

    def note_off(self, pitch: int, tag: int = PLAYER, at_frame: int | None = None) -> None:
        """Release a note. Never lost: if the queue is full it goes through the flags."""
        try:
            pitch, tag = int(pitch), self._check_tag(tag)
        except (TypeError, ValueError, OverflowError):
            return
        if not timbre.LOWEST_PITCH <= pitch <= timbre.HIGHEST_PITCH:
            return
        try:
            at = IMMEDIATE if at_frame is None else max(0, int(at_frame))
        except (TypeError, ValueError, OverflowError):
            at = IMMEDIATE                        # a bad time must not lose the release
        seq = self._queue.next_seq()
        if not self._queue.put((at, seq, NOTE_OFF, pitch, 0, tag, None)):
            self.stats["flagged_releases"] += 1
            if at == IMMEDIATE:
                self._flags.raise_note_off(tag, pitch, seq)
            else:                                 # a lost scheduled off: drop the whole reply
                self._flags.raise_cancel(tag, seq)

    def cancel(self, tag: int) -> None:
        """Release every voice with this tag now and drop its scheduled commands."""
        try:
            tag = self._check_tag(tag)
        except (TypeError, ValueError, OverflowError):
            return
        seq = self._queue.next_seq()
        if not self._queue.put((IMMEDIATE, seq, CANCEL, 0, 0, tag, None)):
            self.stats["flagged_releases"] += 1
            self._flags.raise_cancel(tag, seq)

    def all_notes_off(self) -> None:
        """Release everything now and drop every scheduled command."""
        seq = self._queue.next_seq()
        if not self._queue.put((IMMEDIATE, seq, ALL_OFF, 0, 0, 0, None)):
            self.stats["flagged_releases"] += 1
            self._flags.raise_all_off(seq)

    def set_gain(self, gain: float) -> None:
        """Master volume 0..1 (clamped), glided over ~30 ms by the audio thread."""
        self.output.set_gain(gain)

    @staticmethod
    def _check_tag(tag) -> int:
        tag = int(tag)
        if not 0 <= tag < MAX_TAGS:
            raise ValueError(f"synth tag {tag} must be within 0..{MAX_TAGS - 1}")
        return tag

    # ==== introspection: any thread ========================================================
    def sounding(self) -> set[tuple[int, int]]:
        """(pitch, tag) of every note that is held: note-on without note-off yet."""
        return self.voices.held_notes()

    def is_silent(self) -> bool:
        """No voice sounds at all (released voices have faded out to zero) and the room's
        tail has ended: the output is exact zeros from here on."""
        return not bool(np.any(self.voices.stage != IDLE)) and self.reverb.drained

    def started(self) -> list[tuple[float | None, int]]:
        """Recent note starts, oldest first: (stamp given to note_on, absolute frame of the
        note's first sample)."""
        return [(stamp, frame) for stamp, frame, _, _ in self.started_notes()]

    def started_notes(self) -> list[tuple[float | None, int, int, int]]:
        """Like ``started`` with the pitch and tag: (stamp, frame, pitch, tag)."""
        count = self._started_count
        out = []
        for k in range(max(0, count - STARTED_RING), count):
            i = k % STARTED_RING
            stamp = float(self._started_stamp[i])
            out.append((None if math.isnan(stamp) else stamp, int(self._started_frame[i]),
                        int(self._started_pitch[i]), int(self._started_tag[i])))
        return out

    @property
    def table_bytes(self) -> int:
        return self.bank.nbytes

    # ==== the audio thread =================================================================
    def render(self) -> np.ndarray:
        """Render the next block: int16 (block_frames, channels), valid until the next call."""
        F = self.block_frames
        start = self.frame
        self._drain_commands(start)
        heap = self._scheduled
        pos = 0
        splits = 0
        while pos < F:
            while heap and heap[0][AT] <= start + pos:
                self._apply(heapq.heappop(heap), start + pos)
            end = F
            if heap and heap[0][AT] < start + F:
                if splits < self.max_splits:
                    end = heap[0][AT] - start
                    splits += 1
                else:                      # too many event frames in one block: apply them now
                    while heap and heap[0][AT] < start + F:
                        self.stats["quantized_events"] += 1
                        self._apply(heapq.heappop(heap), start + pos)
            self._render_segment(pos, end, start)
            pos = end
        if self._max_hold is not None and start >= self._next_hold_check:
            self._release_overheld(start)
        self.reverb.process(self._mix, self.voices.highest_active > 0)
        self.output.process(self._mix, self._block)
        self.stats["blocks"] += 1
        self.stats["limited_blocks"] = self.output.limited_blocks
        self.stats["clipped_blocks"] = self.output.clipped_blocks
        self.frame = start + F
        return self._block

    def _drain_commands(self, start: int) -> None:
        flags = self._flags.take() if self._flags.dirty else None
        queue = self._queue
        while True:
            cmd = queue.get_nowait()
            if cmd is None:
                break
            while flags and flags[0][SEQ] < cmd[SEQ]:
                self._apply(flags.pop(0), start)
            at = cmd[AT]
            if at == IMMEDIATE:
                self._apply(cmd, start)
            elif at <= start:
                if at < start:
                    self.stats["late_events"] += 1
                self._apply(cmd, start)
            elif cmd[KIND] == NOTE_ON and len(self._scheduled) >= self._max_scheduled:
                self.stats["dropped_commands"] += 1      # releases are always kept
            else:
                heapq.heappush(self._scheduled, cmd)
        while flags:
            self._apply(flags.pop(0), start)

    def _apply(self, cmd: tuple, frame: int) -> None:
        """One command, taking effect at absolute ``frame`` (the current segment's start)."""
        kind, vb = cmd[KIND], self.voices
        if kind == NOTE_ON:
            pitch, velocity, tag = cmd[PITCH], cmd[VELOCITY], cmd[TAG]
            note = (pitch, velocity, tag, cmd[STAMP])
            self.stats["note_ons"] += 1
            v = vb.find(pitch, tag, (ATTACK, HELD, RELEASE))
            if v >= 0 and (vb.stage[v] != RELEASE or not np.any(vb.stage == IDLE)):
                # re-struck while held (or no free voice): fade it, then strike again. A key
                # re-pressed during its release tail takes a free voice instead, at once, so
                # a child hammering one button hears every press without delay.
                self.stats["retriggers"] += 1
                vb.fade(v, note, frame)
                return
            v = vb.find_pending(pitch, tag)
            if v >= 0:                                 # re-struck before it even started
                vb.pending_note[v] = note
                return
            v, how = vb.choose_victim()
            if how == "idle":
                self._start(v, note, frame)
            else:
                self.stats["steals" if how == "steal" else "replaced_pending"] += 1
                vb.fade(v, note, frame)
        elif kind == NOTE_OFF:
            self.stats["note_offs"] += 1
            v = vb.find(cmd[PITCH], cmd[TAG])
            if v >= 0:
                vb.release(v, frame)
            else:
                v = vb.find_pending(cmd[PITCH], cmd[TAG])
                if v >= 0:                             # released before its voice was free
                    vb.pending[v] = False
                    vb.pending_note[v] = None
        elif kind == CANCEL:
            self.stats["cancels"] += 1
            self._release_where(cmd[TAG], frame)
            if any(c[TAG] == cmd[TAG] for c in self._scheduled):
                self._scheduled[:] = [c for c in self._scheduled if c[TAG] != cmd[TAG]]
                heapq.heapify(self._scheduled)
        elif kind == ALL_OFF:
            self.stats["all_notes_offs"] += 1
            self._release_where(None, frame)
            self._scheduled.clear()

    def _release_where(self, tag: int | None, frame: int) -> None:
        """Release held voices with this tag (None: all) and forget pending notes with it."""
        vb = self.voices
        held = (vb.stage == ATTACK) | (vb.stage == HELD)
        if tag is not None:
            held &= vb.tag == tag
        for v in np.flatnonzero(held):
            vb.release(int(v), frame)                # (an attack completes first: ~3 ms)
        for v in np.flatnonzero(vb.pending):        # pending notes go by their own tag
            note = vb.pending_note[v]
            if tag is None or note is None or note[2] == tag:
                vb.pending[v] = False
                vb.pending_note[v] = None

    def _start(self, v: int, note: tuple, frame: int) -> None:
        pitch, velocity, tag, stamp = note
        self.voices.start(v, pitch, velocity, tag, frame)
        self._ws[self._ws_slot, :, v] = 0.0   # (its strike ramps from zero, as its level)
        self.output.strikes += 1              # (the compressor may follow a new strike)
        i = self._started_count % STARTED_RING
        self._started_stamp[i] = np.nan if stamp is None else stamp
        self._started_frame[i] = frame
        self._started_pitch[i] = pitch
        self._started_tag[i] = tag
        self._started_count += 1

    def _release_overheld(self, start: int) -> None:
        """A held note older than max_hold_s is released: a lost note-off cannot drone on."""
        vb = self.voices
        self._next_hold_check = start + self.sample_rate // 10
        held = (vb.stage == ATTACK) | (vb.stage == HELD)
        for v in np.flatnonzero(held & (start - vb.start_frame > self._max_hold)):
            vb.release(int(v), start)
            self.stats["auto_releases"] += 1

    def _render_segment(self, pos: int, end: int, block_start: int) -> None:
        n = end - pos
        vb = self.voices
        mix = self._mix[pos:end]
        if vb.highest_active == 0:
            mix.fill(0.0)
            return
        full = n == self.block_frames
        # 1. every voice's level at the segment's end (e *= exp(-n rate); level = target + e)
        #    and every row's own decay; a full block's factors were computed at each stage's
        #    start, a part of a block (split at a scheduled note) computes its own
        if full:
            decay, row_decay = vb.d_block, vb.row_d2
        else:
            decay, row_decay = self._decay_n, self._row_decay_n2
            np.multiply(vb.rate, -float(n), decay)
            np.exp(decay, decay)
            np.multiply(vb.row_rate, -float(n), self._row_decay_n)
            np.exp(self._row_decay_n, self._row_decay_n)
            np.copyto(row_decay, self._row_decay_n[None, :, None])
        # (every voice held or idle: the levels are 1 or 0 and stay so, nothing to compute)
        steady = vb.n_changing == 0
        if not steady:
            np.multiply(vb.e, decay, vb.e)
            np.add(vb.e, vb.target, vb.level)
        end_frame = block_start + end
        starts = self._starts
        ended = end_frame >= vb.next_cross.item() - 1e-6
        if ended:                              # a stage ends in this segment (rare)
            for v in np.flatnonzero(vb.cross_at <= end_frame + 1e-6):
                if vb.stage_ends(int(v), end_frame):
                    starts.append(int(v))
        # 2. gains at the segment's end: rows' gains decay, times their voice's level, into
        #    the next weight slot; the change from the segment's start into this slot. With
        #    every level 1 or 0 (an idle voice's gains are zero) that product is the gains.
        np.multiply(vb.gain2, row_decay, vb.gain2)
        slot = self._w_slot
        w_start, w_change, w_next = self._w_parts[slot]
        if steady:
            np.copyto(self._w_end[1 - slot], self._gain_rows)
        else:                        # (a broadcast copy, then same-shape operands: no buffer)
            np.copyto(self._level_full, self._level_rows)
            np.multiply(self._gain_rows, self._level_full, self._w_end[1 - slot])
        np.subtract(w_next, w_start, w_change)
        if not full:                 # the change per frame (a full block's ramp has the 1/n)
            np.multiply(w_change, 1.0 / n, w_change)
        # 3. oscillators, laid out (frames, rows) and always all rows: every operand then
        #    has the same shape and layout, so numpy never allocates an iteration buffer,
        #    and the cost does not depend on how many keys are down. The phase of every
        #    frame and row (less half a sample) from one matmul; + _MAGIC rounds it to the
        #    table index (a floor, thanks to the half sample) whose bits are read as an
        #    integer and wrapped; the rest is the fraction - 0.5, the weight of the slope in
        #    the (sample at the midpoint, slope) pairs of the table.
        if full:
            ph, m, m_bits, i32, idx, offset, mask, pairs, flat, frac, y, ramp = self._views
        else:
            ph, m, i32, idx, offset, mask, pairs, y = (a[:n] for a in self._full)
            m_bits, flat, frac = m.view(np.int32), pairs.reshape(n, -1), self._weights[:n, :, 1]
            ramp = self._ramp_part[:n]
        np.dot(self._ramp2[:n], vb.inc_phase, ph)
        np.add(ph, self._magic, m)
        np.bitwise_and(m_bits, mask, i32)
        np.add(i32, offset, i32)
        np.copyto(idx, i32)
        np.rint(ph, m)                                   # (= m - magic, bit for bit)
        np.subtract(ph, m, frac)
        self.bank.table.take(idx, 0, pairs, "clip")      # (mode "raise" would copy)
        np.multiply(pairs, self._weights[:n] if not full else self._weights, pairs)
        # 4. mix: one matmul sums every row's sample and slope part with its gain at the
        #    segment's start and with its change; mix = start part + ramp x change part
        np.dot(flat, self._w_t[slot], y)
        if block_start + pos < vb.strike_until:
            self._strikes(n, full, steady, pos, y)
        elif self._strike_on:
            self._strike_on = False
        np.multiply(y, ramp, y)
        np.dot(y, self._sum_parts, mix)
        # advance to the segment's end
        self._w_slot = 1 - slot
        phase = vb.inc_phase[1]
        if full:
            np.add(phase, vb.step, phase)
        else:
            np.multiply(vb.inc_phase[0], float(n), self._step_n)
            np.add(phase, self._step_n, phase)
        blocks = self.stats["blocks"]
        if pos == 0 and blocks % self._wrap_every == 0:
            # the phase is wrapped into its table every few small blocks (float32 keeps it
            # within a millionth of a sample per block until then: under 0.001 cents)
            np.remainder(phase, vb.size, phase)
            if blocks % _FLUSH_EVERY == 0:
                np.less(vb.gain2, _TINY, out=self._tiny)  # a long-decayed row is silence
                np.copyto(vb.gain2, self._zero, where=self._tiny)
                np.less(vb.strike_gain, _TINY, out=self._tiny_strike)
                np.copyto(vb.strike_gain, self._zero, where=self._tiny_strike)
        if starts:
            for v in starts:
                note = vb.pending_note[v]
                vb.pending[v] = False
                vb.pending_note[v] = None
                if note is not None:
                    self._start(v, note, end_frame)
            starts.clear()
            vb.refresh_highest_active()
        elif ended:
            vb.refresh_highest_active()

    def _strikes(self, n: int, full: bool, steady: bool, pos: int, y: np.ndarray) -> None:
        """Add every voice's strike burst to ``y`` (the mix's start and change parts) for a
        segment of n frames, its gains fading and ramped as the table rows' are. Called
        only while a strike sounds."""
        vb = self.voices
        slot = self._ws_slot
        ws, ws_start, ws_change, ws_next = self._ws_parts[slot]
        if not self._strike_on:
            # every earlier strike has ended (its samples are zeros): ramp from zero, as a
            # new note's level starts at zero
            self._strike_on = True
            ws.fill(0.0)
        gain = vb.strike_gain
        np.multiply(gain, vb.strike_d if full else math.exp(-vb.strike_rate * n), gain)
        if steady:
            np.copyto(ws_next, gain)
        else:
            np.multiply(gain, self._level_strike, ws_next)
        np.subtract(ws_next, ws_start, ws_change)
        if full:
            x, ys, positions = self._s_x, self._s_y, vb.strike_pos
        else:
            np.multiply(ws_change, 1.0 / n, ws_change)
            x, ys, positions = self._s_x[:n], self._s_y[:n], vb.strike_pos[:n]
        vb.strike_table.take(positions, None, x, "clip")
        np.dot(x, self._ws_t[slot], ys)
        np.add(y, ys, y)
        np.add(vb.strike_pos, n, vb.strike_pos)
        if pos == 0 and self.stats["blocks"] % vb.strike_clamp_every == 0:
            np.minimum(vb.strike_pos, vb.strike_end, out=vb.strike_pos)   # (a burst's zeros)
        self._ws_slot = 1 - slot
