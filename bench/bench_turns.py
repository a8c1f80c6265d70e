"""The conductor's own work at the end of a phrase: planning the reply.

Method: the real conductor, synth and models on the test rig's frame clock (tests/rig.py);
8000 notes are offered to the phrase (half an hour of play with a pedal stuck down, the case
that once took 215 ms), the phrase keeps its newest ``MAX_PHRASE_NOTES``, and the time of
``_answer`` - tempo estimate, quantization, priming the melody model, sampling the reply and
scheduling it in the synth - is taken with ``time.perf_counter``, five times; then again with
harmony on, which plans and schedules the reply's accompaniment too.
"""

from __future__ import annotations

import time

import numpy as np

from . import Figure


def run(quick: bool = False) -> list[Figure]:
    plain = _planning_ms(quick, harmony=False)
    with_harmony = _planning_ms(quick, harmony=True)
    from piano_buddy.conductor import MAX_PHRASE_NOTES
    note = f"the phrase keeps its newest {MAX_PHRASE_NOTES}"
    return [Figure("turns", "reply planned after 8000 notes offered, median", plain, "ms", 20.0,
                   note=note),
            Figure("turns", "the same with harmony on (reply harmonized), median",
                   with_harmony, "ms", 20.0, note=note)]


def _planning_ms(quick: bool, harmony: bool) -> float:
    import dataclasses

    from piano_buddy.config import Config
    from piano_buddy.phrase import Note

    from tests.rig import Rig

    cfg = Config()
    rig = Rig(dataclasses.replace(cfg, harmony=dataclasses.replace(cfg.harmony,
                                                                   enabled=harmony)))
    c = rig.conductor
    rng = np.random.default_rng(0)
    times = []
    try:
        for _ in range(3 if quick else 5):
            for i in range(8000):
                t = i * 0.2
                c._phrase_note(Note(int(rng.integers(48, 84)), t, t + 0.1, 90))
            t0 = time.perf_counter()
            c._answer(rig.now())
            times.append((time.perf_counter() - t0) * 1000)
            c._finish_reply(rig.now())
    finally:
        rig.close()
    return float(np.median(times))
