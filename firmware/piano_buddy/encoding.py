"""The token and input layouts of both models: one table each, shared by training, export
and the runtime, so the three can never disagree.

Melody events live on a 16th-note grid (4 steps per quarter), as in Magenta's MelodyRNN:
``NO_EVENT`` holds whatever is sounding, ``NOTE_OFF`` ends it, any other token starts a pitch.
Beside each token the model gets the position in the bar of the step it is about to predict,
as binary counters (MelodyRNN's lookback encoding has them too, counting from the start
of the sequence; ours restart at every bar line, so 3/4 and 6/8 bars are told apart from
4/4 ones), so that replies put notes on downbeats as tunes do.

The Genie decoder sees, per press: the button scaled to [-1, 1], the previous key (0 = none
yet) and the time since the previous press in bins of 32 ms (saturating near 1 s).
"""

from __future__ import annotations

# --- Melody model --------------------------------------------------------------------------
STEPS_PER_QUARTER = 4
MELODY_MIN_PITCH = 48  # C3
MELODY_MAX_PITCH = 84  # C6
NO_EVENT = 0
NOTE_OFF = 1
FIRST_PITCH_TOKEN = 2
MELODY_VOCAB = FIRST_PITCH_TOKEN + (MELODY_MAX_PITCH - MELODY_MIN_PITCH + 1)  # 39


POSITION_BITS = 5          # bars up to 32 steps (12/8 is 24)
MAX_BAR_STEPS = 1 << POSITION_BITS
BAR_STEPS = 4 * STEPS_PER_QUARTER  # the box's bar: four quarters at the phrase's tempo


def position_input(pos: int) -> list[float]:
    """Binary counters of a step's position in its bar (0 = the downbeat), each bit as
    +1 / -1 (lowest bit first), the model's ``position`` input."""
    pos = int(pos) % MAX_BAR_STEPS
    return [1.0 if (pos >> b) & 1 else -1.0 for b in range(POSITION_BITS)]


def pitch_to_token(pitch: int) -> int:
    """Token for a MIDI pitch inside the melody range (ValueError outside it)."""
    if not MELODY_MIN_PITCH <= pitch <= MELODY_MAX_PITCH:
        raise ValueError(f"pitch {pitch} outside the melody range "
                         f"{MELODY_MIN_PITCH}-{MELODY_MAX_PITCH}")
    return FIRST_PITCH_TOKEN + pitch - MELODY_MIN_PITCH


def token_to_pitch(token: int) -> int | None:
    """MIDI pitch of a pitch token, None for NO_EVENT and NOTE_OFF."""
    if token < FIRST_PITCH_TOKEN:
        return None
    return MELODY_MIN_PITCH + token - FIRST_PITCH_TOKEN


# --- Piano Genie decoder ---------------------------------------------------------------------
NUM_BUTTONS = 8
PIANO_LOWEST = 21   # A0
PIANO_HIGHEST = 108  # C8
NUM_KEYS = PIANO_HIGHEST - PIANO_LOWEST + 1  # 88
PREV_KEY_CLASSES = NUM_KEYS + 1  # index 0 = no previous key (start of a phrase)
DT_BINS_PER_SECOND = 31.25
DT_MAX_BIN = 32
DT_CLASSES = DT_MAX_BIN + 1


def button_to_input(button: int) -> float:
    """Button 0..7 scaled to [-1, 1], as the Piano Genie paper feeds it."""
    if not 0 <= button < NUM_BUTTONS:
        raise ValueError(f"button {button} outside 0-{NUM_BUTTONS - 1}")
    return 2.0 * button / (NUM_BUTTONS - 1) - 1.0


def dt_to_bin(seconds: float) -> int:
    """Time since the previous press, in 32 ms bins capped at DT_MAX_BIN."""
    if seconds != seconds or seconds < 0:  # NaN or negative: treat as simultaneous
        return 0
    return min(DT_MAX_BIN, int(round(seconds * DT_BINS_PER_SECOND)))


def key_to_pitch(key: int) -> int:
    """Piano key index 0..87 to MIDI pitch."""
    return PIANO_LOWEST + key


def pitch_to_key(pitch: int) -> int:
    """MIDI pitch to piano key index 0..87, clamped to the keyboard."""
    return min(NUM_KEYS - 1, max(0, pitch - PIANO_LOWEST))


def button_for_pitch(pitch: int, low: int = PIANO_LOWEST, high: int = PIANO_HIGHEST) -> int:
    """The button whose share of the keyboard [low, high] holds this pitch (for the LEDs)."""
    span = high - low + 1
    share = (min(high, max(low, pitch)) - low) * NUM_BUTTONS // span
    return min(NUM_BUTTONS - 1, share)
