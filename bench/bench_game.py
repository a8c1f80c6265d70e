"""The copy-me game's judge, measured (issue 13: a perfect copy judged right at least 95% of
the time, a random one at most 10%).

Method: phrases made as the box makes them (``CopyMeGame.next_phrase`` on the committed
melody model, at the game's tempo, lengths 2 to 6 in turn) and lit as the box lights them
(the Genie encoder checked through the planning decoder, ``assembly.Models.copy_me``), each
judged by ``copy_game.judge`` against three copies:

* perfect: the lit buttons at the lit times;
* human: the lit buttons, the whole copy 0.75-1.3 x as fast, every onset off by a normal
  error of 30 ms (a child's hand, not a sequencer's);
* random: as many presses as notes, each button drawn from the eight, gaps drawn from
  0.15-0.8 s.

The share judged right is reported per kind; these are quality figures, not timings.
"""

from __future__ import annotations

import numpy as np

from . import Figure

HUMAN_TEMPO = (0.75, 1.3)
HUMAN_JITTER_S = 0.030
RANDOM_GAPS_S = (0.15, 0.8)


def copy_judgements(phrases: int = 200, seed: int = 0) -> tuple[float, float, float]:
    """(perfect, human, random): the share of copies judged right."""
    from piano_buddy import assembly
    from piano_buddy.config import Config
    from piano_buddy.copy_game import GAME_QPM, MAX_NOTES, MIN_NOTES, CopyMeGame, Played, judge
    from piano_buddy.copy_game import Task
    from piano_buddy.encoding import NUM_BUTTONS
    from piano_buddy.phrase import unquantize

    cfg = Config()
    rng = np.random.default_rng(seed)
    models = assembly.load_models(cfg, np.random.default_rng(seed))
    game = CopyMeGame()
    right = {"perfect": 0, "human": 0, "random": 0}
    for i in range(phrases):
        game.length = MIN_NOTES + i % (MAX_NOTES - MIN_NOTES + 1)
        steps = game.next_phrase(models.melody, cfg.turns.temperature)
        notes = sorted(unquantize(steps, GAME_QPM), key=lambda n: (n.start, n.pitch))
        task = Task(notes, [int(b) for b in models.copy_me(notes)])
        onsets = np.array(task.onsets)
        perfect = [Played(b, 60, t) for b, t in zip(task.buttons, onsets)]
        tempo = rng.uniform(*HUMAN_TEMPO)
        human_onsets = onsets * tempo + rng.normal(0, HUMAN_JITTER_S, len(onsets))
        human = [Played(b, 60, t) for b, t in zip(task.buttons, np.sort(human_onsets))]
        gaps = rng.uniform(*RANDOM_GAPS_S, len(onsets) - 1)
        random_onsets = np.concatenate([[0.0], np.cumsum(gaps)])
        random_ = [Played(int(rng.integers(NUM_BUTTONS)), 60, t) for t in random_onsets]
        for kind, played in (("perfect", perfect), ("human", human), ("random", random_)):
            right[kind] += judge(task, played)[0]
    return tuple(right[k] / phrases for k in ("perfect", "human", "random"))


def run(quick: bool = False) -> list[Figure]:
    phrases = 50 if quick else 200
    perfect, human, random_ = copy_judgements(phrases)
    note = f"{phrases} phrases of 2-6 notes"
    return [Figure("game", "copy me: perfect copy judged right", perfect * 100, "%", 95.0,
                   "min", note),
            Figure("game", "copy me: human-timed copy judged right", human * 100, "%", 95.0,
                   "min", note),
            Figure("game", "copy me: random copy judged right", random_ * 100, "%", 10.0,
                   "max", note)]
