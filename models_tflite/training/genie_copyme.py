"""Copy-me LEDs, measured: do the lit buttons, pressed at the AI's onsets, play the AI's tune?

During the AI's turn each note lights a button; a child who presses the lit buttons in time
should hear (nearly) the AI's melody. We sample AI replies the way the box makes them (the
committed melody model continuing the fixture's test primers, 16th steps at a tempo drawn
per reply), light buttons for each whole reply, then press those buttons at the reply's
onsets through the committed Genie decoder (reset, T=0.25, all 88 keys) and compare:

* direction: of the AI's melodic steps (consecutive notes of different pitch), the share
  the decoder's keys move the same way (up or down);
* near: the share of notes the decoder plays within 2 semitones of the AI's note;
* buttons used: which of the 8 buttons light across all replies.

Three ways to light, side by side: ``encoder`` (the Genie encoder alone,
``GenieEncoder.buttons_for(notes)``), ``encoder + decoder check`` (the encoder's buttons
checked note by note through a second decoder, ``buttons_for(notes, check=decoder)``: what
the box lights) and ``fixed eighths`` (``encoding.button_for_pitch``, the first firmware's
way). The issue's bars are judged on what the box lights.
Pure numpy plus the firmware.

    .venv/bin/python -m models_tflite.training.genie_copyme
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

REPLIES, SEED, TEMPERATURE = 200, 2025, 0.25
REPLY_STEPS = (16, 64)           # 16th steps per reply (1-4 bars), drawn per reply
SIXTEENTH_SECONDS = (0.1, 0.16)  # 94-150 quarter notes a minute, drawn per reply
TARGETS = {"direction": 0.90, "near": 0.60}

Notes = list[tuple[int, float]]  # (MIDI pitch, onset in seconds)


def sample_replies(n: int = REPLIES, seed: int = SEED, melody_path: Path | None = None,
                   reference_path: Path | None = None) -> list[Notes]:
    """``n`` AI replies from the committed melody model on the fixture's test primers."""
    from piano_buddy.melody import MelodyModel

    from . import common, evaluate
    ref = np.load(reference_path or common.MODELS_DIR / "training" / "melody_reference.npz")
    primers = evaluate.primers_from_fixture(ref)
    rng = np.random.default_rng(seed)
    model = MelodyModel(melody_path, rng=np.random.default_rng(seed + 1))
    replies = []
    for i in range(n):
        notes, primer_steps = primers[i % len(primers)]
        steps = int(rng.integers(REPLY_STEPS[0], REPLY_STEPS[1] + 1))
        sixteenth = float(rng.uniform(*SIXTEENTH_SECONDS))
        reply = model.continue_phrase(notes, steps, 1.0, primer_steps=primer_steps)
        replies.append([(int(x.pitch), x.start * sixteenth) for x in reply])
    return replies


def fixed_eighths(notes: Notes) -> list[int]:
    """The first firmware's LEDs: a fixed eighth of the keyboard per button."""
    from piano_buddy.encoding import button_for_pitch
    return [button_for_pitch(p) for p, _ in notes]


def measure(decoder, light: Callable[[Notes], Sequence[int]], replies: Sequence[Notes],
            temperature: float = TEMPERATURE, seed: int = SEED) -> dict:
    """Direction, near and button figures of one way to light (see the module doc)."""
    decoder.rng = np.random.default_rng(seed)
    steps = same_dir = near = notes_n = 0
    used = np.zeros(8, np.int64)
    for notes in replies:
        buttons = list(light(notes))
        decoder.reset()
        keys = [decoder.press(int(b), t, temperature) for b, (_, t) in zip(buttons, notes)]
        ai = np.array([p for p, _ in notes])
        got = np.array(keys)
        d_ai, d_got = np.sign(np.diff(ai)), np.sign(np.diff(got))
        moved = d_ai != 0
        steps += int(moved.sum())
        same_dir += int((d_ai == d_got)[moved].sum())
        near += int(np.sum(np.abs(got - ai) <= 2))
        notes_n += len(notes)
        used += np.bincount(np.asarray(buttons, np.int64), minlength=8)
    return {"direction": same_dir / max(1, steps), "near": near / max(1, notes_n),
            "buttons_used": int(np.count_nonzero(used)), "button_counts": used.tolist(),
            "steps": steps, "notes": notes_n, "replies": len(replies)}


LIT = "encoder + decoder check"  # what the box lights, judged against the bars


def both(decoder, encoder, replies: Sequence[Notes], planner=None) -> dict[str, dict]:
    """The three ways to light on the same replies. ``planner``: the decoder used for the
    check (a second instance of the same model; default: a new one from decoder.path)."""
    from piano_buddy.genie import GenieDecoder
    planner = planner or GenieDecoder(decoder.path)
    return {LIT: measure(decoder, lambda n: encoder.buttons_for(n, check=planner), replies),
            "encoder": measure(decoder, encoder.buttons_for, replies),
            "fixed eighths": measure(decoder, fixed_eighths, replies)}


def rows(results: dict[str, dict]) -> list[tuple[str, str, str, bool | None]]:
    """(figure, value, target, ok) lines for `make eval` and the card."""
    out = []
    for name, m in results.items():
        judged = name == LIT
        out += [
            (f"copy-me ({name}): direction of the AI's steps kept",
             f"{100 * m['direction']:.1f}%", ">= 90%" if judged else "",
             m["direction"] >= TARGETS["direction"] if judged else None),
            (f"copy-me ({name}): notes within 2 semitones",
             f"{100 * m['near']:.1f}%", ">= 60%" if judged else "",
             m["near"] >= TARGETS["near"] if judged else None),
            (f"copy-me ({name}): buttons that light",
             f"{m['buttons_used']} of 8 " + "/".join(map(str, m["button_counts"])),
             "all 8" if judged else "", m["buttons_used"] == 8 if judged else None),
        ]
    return out


def main(argv=None) -> int:
    from piano_buddy.genie import GenieDecoder, GenieEncoder
    replies = sample_replies()
    res = both(GenieDecoder(), GenieEncoder(), replies)
    n = res[LIT]
    print(f"{n['replies']} replies, {n['notes']} notes, {n['steps']} melodic steps")
    for name, value, target, ok in rows(res):
        print(f"{name:<56} {value:<28} {target:<8} {'' if ok is None else ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
