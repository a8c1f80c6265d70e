"""The Piano Genie at run time: the decoder (eight buttons in, one of 88 piano keys out)
and the encoder (a whole planned melody in, the button for each of its notes out: the
copy-me LEDs).

Each press runs ONE step of the quantized TFLite decoder (a 2x128 LSTM). Its input is the
paper's 123-value feature vector plus the button move, 139 values packed by
:func:`fill_features` (shared with training so the two can never disagree): the button
scaled to [-1, 1], a one-hot of the previous key (0 = start of a phrase), a one-hot of the
time since the previous press in 32 ms bins, and a one-hot of the move from the previous
button (:func:`move_class`: same button, up or down by how many; 0 = first press). The move
is there so the decoder knows "the same button again" exactly instead of inferring it from
its state: the paper's decoder (123 values) repeated the previous key on most repeated
presses at the box's sharp temperature.
The LSTM state of both layers travels as one packed vector ``[h1, c1, h2, c2]`` that the
model returns and we feed back on the next press.

The encoder is the autoencoder's other half: a bidirectional 2x128 LSTM that reads a whole
note sequence (one-hot key | one-hot time since the previous note, :func:`fill_encoder_features`)
and gives each note a value in [-1, 1] that rounds to one of the eight buttons, the ones a
player would press to make the decoder play that melody. It runs once per AI reply, when
the reply is planned, so it may look ahead.

The hot path is kept allocation-light (the box answers a press in well under a millisecond):
input arrays are preallocated, tensor indices looked up once, and sampling reuses buffers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import encoding as enc
from .errors import ModelError

MODEL_NAME = "genie.tflite"
UNITS = (128, 128)
STATE_SIZE = 2 * sum(UNITS)  # [h1, c1, h2, c2]

# Feature layout of one press (the decoder's input): button | previous key | dt bin |
# button move. A decoder of the paper's 123 features (the first builds) is refused by the
# loader's shape check ("wrong model for this firmware").
BUTTON_OFFSET = 0
PREV_KEY_OFFSET = 1
DT_OFFSET = PREV_KEY_OFFSET + enc.PREV_KEY_CLASSES            # 90
MOVE_OFFSET = DT_OFFSET + enc.DT_CLASSES                       # 123
MOVE_CLASSES = 2 * enc.NUM_BUTTONS                             # 0 = first press, 1..15
FEATURES = MOVE_OFFSET + MOVE_CLASSES                          # 139

ENCODER_NAME = "genie_encoder.tflite"
# Encoder input layout, one row per note: key one-hot | dt bin one-hot; rows after the last
# note are padding (mask 0). Longer melodies are encoded in consecutive chunks.
ENCODER_LENGTH = 64
ENCODER_DT_OFFSET = enc.NUM_KEYS                               # 88
ENCODER_FEATURES = ENCODER_DT_OFFSET + enc.DT_CLASSES          # 121


def move_class(button: int, prev_button: int | None) -> int:
    """The move from the previous button as a class: 0 for the first press of a phrase,
    else ``button - prev_button + NUM_BUTTONS`` (1..15; 8 = the same button again)."""
    if prev_button is None:
        return 0
    return int(button) - int(prev_button) + enc.NUM_BUTTONS


def fill_features(out: np.ndarray, button_value: float, prev_key_class: int,
                  dt_bin: int, move: int) -> np.ndarray:
    """Write one press's features into ``out`` (last axis FEATURES; zeroed here).

    ``button_value`` is already scaled (``enc.button_to_input``); ``prev_key_class`` is
    0 at the start of a phrase, else previous key index + 1; ``move`` is
    :func:`move_class`.
    """
    out[...] = 0.0
    out[..., BUTTON_OFFSET] = button_value
    out[..., PREV_KEY_OFFSET + prev_key_class] = 1.0
    out[..., DT_OFFSET + dt_bin] = 1.0
    out[..., MOVE_OFFSET + move] = 1.0
    return out


def fill_encoder_features(out: np.ndarray, keys: Sequence[int],
                          dt_bins: Sequence[int]) -> np.ndarray:
    """Write the encoder rows of one note sequence into ``out`` [>= len(keys), 121]
    (zeroed here): key index 0..87 and dt bin (0 for the first note) per note."""
    out[...] = 0.0
    n = len(keys)
    out[np.arange(n), np.asarray(keys, np.int64)] = 1.0
    out[np.arange(n), ENCODER_DT_OFFSET + np.asarray(dt_bins, np.int64)] = 1.0
    return out


def value_to_button(z: np.ndarray) -> np.ndarray:
    """The encoder's real value per note to a button 0..7 (the training bottleneck)."""
    s = float(enc.NUM_BUTTONS - 1)
    return np.round(s * np.clip((np.asarray(z, np.float64) + 1.0) / 2.0, 0.0, 1.0)
                    ).astype(np.int64)


_MISSING = object()


class GenieDecoder:
    """Stateful single-step Piano Genie decoder.

    ``press(button, time)`` returns a MIDI pitch (21..108). ``time`` is in seconds on any
    monotonic clock the caller chooses (injected, so tests and replays are reproducible);
    the first press after :meth:`reset` counts as the start of a phrase.
    """

    def __init__(self, path: str | Path | None = None,
                 rng: np.random.Generator | None = None, prefer: str | None = None,
                 num_threads: int = 1):
        from .paths import model_path
        from .tflite import load_interpreter, tensor_index

        self.path = Path(path) if path is not None else model_path(MODEL_NAME)
        try:
            self.interp = load_interpreter(
                self.path,
                expect_inputs={"features": (1, FEATURES), "state": (1, STATE_SIZE)},
                num_threads=num_threads, prefer=prefer)
        except ModelError as exc:
            if f"shape (1, {MOVE_OFFSET})" not in str(exc):
                raise
            raise ModelError(f"{exc} (a decoder of the {MOVE_OFFSET} features of the builds "
                             f"before the button move: install the genie.tflite that came "
                             f"with this firmware)") from exc
        details_in = self.interp.get_input_details()
        self._features_idx = tensor_index(details_in, "features")
        self._state_idx = tensor_index(details_in, "state")
        # Output names do not survive conversion; tell them apart by shape.
        self._logits_idx = self._state_out_idx = None
        for d in self.interp.get_output_details():
            shape = tuple(int(x) for x in d["shape"])
            if shape == (1, enc.NUM_KEYS):
                self._logits_idx = d["index"]
            elif shape == (1, STATE_SIZE):
                self._state_out_idx = d["index"]
        if self._logits_idx is None or self._state_out_idx is None:
            shapes = [tuple(int(x) for x in d["shape"]) for d in self.interp.get_output_details()]
            raise ModelError(f"model file {self.path}: outputs {shapes}, expected (1, "
                             f"{enc.NUM_KEYS}) logits and (1, {STATE_SIZE}) state: wrong "
                             f"model for this firmware")
        self.rng = rng if rng is not None else np.random.default_rng()
        self._features = np.zeros((1, FEATURES), np.float32)
        self._state = np.zeros((1, STATE_SIZE), np.float32)
        self._probs = np.empty(enc.NUM_KEYS, np.float64)
        self._mask_cache: dict[tuple[int, ...], np.ndarray] = {}
        self._excl_mask = np.ones(enc.NUM_KEYS, bool)
        self._excl_blocked = np.zeros(enc.NUM_KEYS, bool)
        self._prev_class = 0
        self._prev_button: int | None = None
        self._prev_key_col = PREV_KEY_OFFSET
        self._prev_dt_col = DT_OFFSET
        self._prev_move_col = MOVE_OFFSET
        self._last_time: float | None = None

    def reset(self) -> None:
        """Back to the start state: zero LSTM state, no previous key, button or press time."""
        self._state[...] = 0.0
        self._prev_class = 0
        self._prev_button = None
        self._last_time = None

    def snapshot(self) -> tuple:
        """The decoder's whole state (LSTM state, previous key and button, last press
        time), for :meth:`restore`: lets a planner try presses and take them back."""
        return self._state.copy(), self._prev_class, self._prev_button, self._last_time

    def restore(self, snap: tuple) -> None:
        state, self._prev_class, self._prev_button, self._last_time = snap
        self._state[...] = state

    def logits(self, button: int, time: float) -> np.ndarray:
        """Run one decoder step and return its 88 logits (a view: copy to keep it).

        Advances the state, the press time and the previous button, but NOT the previous
        key (``press`` sets it once the key is chosen).
        """
        value = enc.button_to_input(button)  # ValueError for a button outside 0..7
        dt = 0.0 if self._last_time is None else time - self._last_time
        self._last_time = time
        f = self._features
        f[0, self._prev_key_col] = 0.0
        f[0, self._prev_dt_col] = 0.0
        f[0, self._prev_move_col] = 0.0
        col_key = PREV_KEY_OFFSET + self._prev_class
        col_dt = DT_OFFSET + enc.dt_to_bin(dt)
        col_move = MOVE_OFFSET + move_class(button, self._prev_button)
        self._prev_button = int(button)
        f[0, BUTTON_OFFSET] = value
        f[0, col_key] = 1.0
        f[0, col_dt] = 1.0
        f[0, col_move] = 1.0
        self._prev_key_col, self._prev_dt_col, self._prev_move_col = col_key, col_dt, col_move
        interp = self.interp
        interp.set_tensor(self._features_idx, f)
        interp.set_tensor(self._state_idx, self._state)
        interp.invoke()
        self._state[...] = interp.get_tensor(self._state_out_idx)
        return interp.get_tensor(self._logits_idx)[0]

    def press(self, button: int, time: float, temperature: float = 0.25,
              allowed: Sequence[int] | None = None,
              exclude: Iterable[int] | None = None) -> int:
        """The MIDI pitch for a press of ``button`` (0..7) at ``time`` seconds.

        ``temperature`` 0 picks the most likely key, 1 samples the plain softmax.
        ``allowed``: MIDI pitches to choose among (e.g. ``range(48, 85)``); None or empty
        means all 88 keys. Pitches off the keyboard are ignored; if none is left, all 88.
        ``exclude``: pitches already sounding (held by another button or a MIDI key): a
        press that picked one of them would make no new sound, so they are taken out of the
        allowed keys for this press; if that leaves none, they stay allowed (the press
        re-strikes).
        """
        logits = self.logits(button, time)
        masks = self._mask(allowed)
        mask = blocked = None
        if masks is not None:
            mask, blocked = masks
        if exclude:
            masks = self._exclude(mask, exclude)
            if masks is not None:
                mask, blocked = masks
        if not temperature > 0.0:  # 0, negative or NaN: the most likely key
            if mask is None:
                key = int(np.argmax(logits))
            else:
                p = self._probs
                np.copyto(p, logits)
                p[blocked] = -np.inf
                key = int(np.argmax(p))
        else:
            p = self._probs
            np.multiply(logits, 1.0 / float(temperature), out=p)
            if mask is not None:
                p[blocked] = -np.inf
            p -= p.max()
            np.exp(p, out=p)
            np.cumsum(p, out=p)
            key = int(np.searchsorted(p, self.rng.random() * p[-1], side="right"))
            key = min(key, enc.NUM_KEYS - 1)
            if mask is not None and not mask[key]:  # float edge case: nearest allowed
                key = int(np.flatnonzero(mask)[np.argmin(np.abs(np.flatnonzero(mask) - key))])
        self._prev_class = key + 1
        return enc.key_to_pitch(key)

    def _exclude(self, mask: np.ndarray | None, exclude: Iterable[int]
                 ) -> tuple[np.ndarray, np.ndarray] | None:
        """(allowed, blocked) with the ``exclude`` pitches blocked too; None when nothing
        would be left (or nothing excluded is on the keyboard)."""
        m = self._excl_mask
        if mask is None:
            m[...] = True
        else:
            np.copyto(m, mask)
        changed = False
        for pitch in exclude:
            k = int(pitch) - enc.PIANO_LOWEST
            if 0 <= k < enc.NUM_KEYS and m[k]:
                m[k] = False
                changed = True
        if not changed or not m.any():
            return None
        np.logical_not(m, out=self._excl_blocked)
        return m, self._excl_blocked

    def _mask(self, allowed: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray] | None:
        """(allowed, blocked) boolean key masks, cached per distinct ``allowed``."""
        if allowed is None:
            return None
        if isinstance(allowed, range):
            cache_key = (allowed.start, allowed.stop, allowed.step, -1)
        else:
            cache_key = tuple(int(x) for x in allowed)
        mask = self._mask_cache.get(cache_key, _MISSING)
        if mask is _MISSING:
            mask = np.zeros(enc.NUM_KEYS, bool)
            for pitch in allowed:
                if enc.PIANO_LOWEST <= int(pitch) <= enc.PIANO_HIGHEST:
                    mask[int(pitch) - enc.PIANO_LOWEST] = True
            # empty or off-keyboard list: all 88 keys
            mask = (mask, ~mask) if mask.any() else None
            if len(self._mask_cache) > 64:
                self._mask_cache.clear()
            self._mask_cache[cache_key] = mask
        return mask


class GenieEncoder:
    """The Piano Genie encoder: which button plays each note of a planned melody.

    ``buttons_for(notes)`` takes the whole melody, ``[(MIDI pitch, onset in seconds), ...]``
    in onset order, and returns one button (0..7) per note: what to light so that a player
    pressing those buttons at those times makes the decoder play (close to) that melody.
    Loaded and checked like the decoder (:func:`piano_buddy.tflite.load_interpreter`: a
    missing, truncated or wrong file is a :class:`ModelError` naming it).
    """

    def __init__(self, path: str | Path | None = None, prefer: str | None = None):
        from .paths import model_path
        from .tflite import load_interpreter, tensor_index

        self.path = Path(path) if path is not None else model_path(ENCODER_NAME)
        self.interp = load_interpreter(
            self.path,
            expect_inputs={"features": (ENCODER_LENGTH, ENCODER_FEATURES),
                           "mask": (ENCODER_LENGTH, 1)},
            prefer=prefer)
        details_in = self.interp.get_input_details()
        self._features_idx = tensor_index(details_in, "features")
        self._mask_idx = tensor_index(details_in, "mask")
        outs = [d for d in self.interp.get_output_details()
                if tuple(int(x) for x in d["shape"]) == (ENCODER_LENGTH, 1)]
        if len(outs) != 1:
            shapes = [tuple(int(x) for x in d["shape"]) for d in self.interp.get_output_details()]
            raise ModelError(f"model file {self.path}: outputs {shapes}, expected one "
                             f"({ENCODER_LENGTH}, 1) value per note: wrong model for this "
                             f"firmware")
        self._out_idx = outs[0]["index"]
        self._features = np.zeros((ENCODER_LENGTH, ENCODER_FEATURES), np.float32)
        self._maskv = np.zeros((ENCODER_LENGTH, 1), np.float32)

    def values(self, keys: Sequence[int], dt_bins: Sequence[int]) -> np.ndarray:
        """The encoder's real value per note (before rounding to a button), any length."""
        keys, dt_bins = list(keys), list(dt_bins)
        out = np.zeros(len(keys), np.float64)
        for start in range(0, len(keys), ENCODER_LENGTH):
            k = keys[start:start + ENCODER_LENGTH]
            d = [0] + dt_bins[start + 1:start + len(k)]  # each chunk starts a sequence
            fill_encoder_features(self._features, k, d)
            self._maskv[...] = 0.0
            self._maskv[:len(k)] = 1.0
            self.interp.set_tensor(self._features_idx, self._features)
            self.interp.set_tensor(self._mask_idx, self._maskv)
            self.interp.invoke()
            out[start:start + len(k)] = self.interp.get_tensor(self._out_idx)[:len(k), 0]
        return out

    def buttons_for(self, notes: Sequence[tuple[int, float]],
                    check: "GenieDecoder | None" = None) -> list[int]:
        """One button per note of ``notes`` = [(pitch, onset seconds), ...] in onset order.

        ``check``: a decoder to play the buttons through (from a reset, as a player starting
        to copy would): each note then gets, of the eight buttons, the one whose most likely
        key moves the way the melody moves and lands nearest the note, the encoder's button
        breaking ties (:func:`checked_buttons`). The encoder alone knows the melody's shape
        but not where the decoder's own previous key has drifted; the check does.
        """
        if not notes:
            return []
        keys = [enc.pitch_to_key(int(p)) for p, _ in notes]
        onsets = [float(t) for _, t in notes]
        dts = [0] + [enc.dt_to_bin(b - a) for a, b in zip(onsets, onsets[1:])]
        buttons = value_to_button(self.values(keys, dts)).tolist()
        return buttons if check is None else checked_buttons(check, notes, buttons)


def checked_buttons(decoder: GenieDecoder, notes: Sequence[tuple[int, float]],
                    proposal: Sequence[int]) -> list[int]:
    """Buttons that make ``decoder`` (reset here; its state is used up) play ``notes``.

    Per note, every button is tried from the decoder's state after the previous chosen
    press (T=0, snapshot and restore) and scored by: does the key move the way the melody
    moves (up, down or not at all), then its distance from the note, then the distance from
    the encoder's ``proposal``. 8 decoder steps a note: about 10 ms for a 64-note reply.
    """
    decoder.reset()
    out: list[int] = []
    prev_pitch = prev_key = None
    for (pitch, onset), proposed in zip(notes, proposal):
        start = decoder.snapshot()
        best = None
        for button in range(enc.NUM_BUTTONS):
            decoder.restore(start)
            key = decoder.press(button, float(onset), 0.0)
            wrong_way = (prev_pitch is not None
                         and np.sign(key - prev_key) != np.sign(int(pitch) - prev_pitch))
            score = (bool(wrong_way), abs(key - int(pitch)), abs(button - int(proposed)))
            if best is None or score < best[0]:
                best = (score, button, key, decoder.snapshot())
        _, button, key, after = best
        decoder.restore(after)
        out.append(button)
        prev_pitch, prev_key = int(pitch), key
    return out
