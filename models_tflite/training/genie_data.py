"""Piano Genie training data: keyboard-like note-onset sequences from the music21 corpus.

There is no free piano *performance* data to be had offline, so we derive onset sequences
from scores that ship inside the music21 wheel: piano pieces, string quartets, all voices of
the Bach chorales, Palestrina and other polyphony. Each piece becomes one array of
(onset in quarter notes, MIDI pitch), sorted in onset order. Performance-like timing
(a random tempo, a tempo drift across the window, onset jitter that also shuffles the order
inside chords) and a transposition are drawn fresh for every training window, so the scores
are never seen with the same timing twice.

Pieces are split into train/valid/test by their corpus path (``common.split_of``), never by
window. The parse runs on every core and is cached under ``build/``.

    .venv-train/bin/python -m models_tflite.training.genie_data   # parse, cache, print stats
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from piano_buddy import encoding as enc

from . import common

CACHE_VERSION = "2"  # the cache holds plain tuples (a dataclass pickled from __main__ breaks)
# Corpus folders (music21's composer directories) we take, in order. Roman-numeral analyses
# (.rntxt) carry no notes worth playing and are skipped.
COLLECTIONS = (
    # piano and keyboard music
    "joplin", "chopin", "mozart", "beethoven", "haydn", "schoenberg", "schumann_clara",
    "schumann_robert", "cpebach", "beach", "handel", "weber", "schubert", "webern",
    "liliuokalani", "johnson_j_r", "corelli", "verdi",
    # chorales (all four voices) and polyphony
    "bach", "palestrina", "monteverdi", "trecento", "luca", "ciconia", "josquin", "lusitano",
)
SKIP_SUFFIXES = (".rntxt", ".txt", ".py", ".json", ".pyc")
# Pieces longer than this many notes are cut (a few Trecento/Beethoven files are huge and
# would dominate sampling; cutting them also bounds the parse time).
MAX_NOTES_PER_PIECE = 20000
# Sampling weight per note, by collection: Palestrina's 1318 masses and motets hold 60% of the
# notes; halving their weight leaves more room for keyboard textures (piano, quartets).
COLLECTION_WEIGHT = {"palestrina": 0.5}


@dataclass
class Piece:
    piece_id: str      # path inside the corpus, e.g. "bach/bwv66.6.mxl"
    collection: str
    split: str
    onsets: np.ndarray   # float32, quarter notes, non-decreasing
    pitches: np.ndarray  # int16 MIDI pitches


def corpus_root() -> Path:
    import music21
    return Path(music21.__file__).resolve().parent / "corpus"


def corpus_files(collections=COLLECTIONS) -> list[str]:
    """Relative paths of every score we parse, sorted for a stable order."""
    root = corpus_root()
    out = []
    for coll in collections:
        base = root / coll
        if not base.is_dir():
            continue
        for dirpath, _, files in os.walk(base):
            for f in files:
                if f.startswith(".") or f.endswith(SKIP_SUFFIXES) or f == "__init__.py":
                    continue
                out.append(str((Path(dirpath) / f).relative_to(root)))
    return sorted(out)


def parse_piece(rel: str) -> Piece | None:
    """Parse one score into onset order; None when it has no notes or does not parse."""
    from music21 import converter
    path = corpus_root() / rel
    try:
        score = converter.parse(str(path))
    except Exception:  # a few corpus files use features music21 cannot read
        return None
    events: list[tuple[float, int]] = []
    try:
        flat = score.flatten() if hasattr(score, "flatten") else score
        for el in flat.notes:
            base = float(el.offset)
            notes = el.notes if hasattr(el, "notes") and el.isChord else [el]
            for n in notes:
                tie = getattr(n, "tie", None)
                if tie is not None and tie.type in ("stop", "continue"):
                    continue  # a held continuation is not a new key press
                if not hasattr(n, "pitch"):
                    continue
                events.append((base, int(n.pitch.midi)))
            if len(events) >= MAX_NOTES_PER_PIECE:
                break
    except Exception:
        return None
    if len(events) < 16:
        return None
    events.sort()
    arr = np.array(events, dtype=np.float64)
    pitches = fold_into_piano(arr[:, 1].astype(np.int16))
    return Piece(rel, rel.split("/", 1)[0], common.split_of(rel),
                 arr[:, 0].astype(np.float32), pitches)


def fold_into_piano(pitches: np.ndarray) -> np.ndarray:
    """Move pitches outside A0-C8 into the keyboard by whole octaves."""
    p = pitches.astype(np.int16).copy()
    while (low := p < enc.PIANO_LOWEST).any():
        p[low] += 12
    while (high := p > enc.PIANO_HIGHEST).any():
        p[high] -= 12
    return p


def load_pieces(collections=COLLECTIONS, limit: int | None = None) -> list[Piece]:
    """All parsed pieces (cached). ``limit`` parses only the first few files of each
    collection (smoke runs); those results are cached under another name."""
    files = corpus_files(collections)
    if limit is not None:
        by_coll: dict[str, list[str]] = {}
        for f in files:
            by_coll.setdefault(f.split("/", 1)[0], []).append(f)
        files = [f for fs in by_coll.values() for f in fs[:limit]]
        name = f"genie-pieces-limit{limit}-{len(files)}"
    else:
        name = "genie-pieces"

    def build():
        t0 = time.monotonic()
        parsed = common.parallel_map(parse_piece, files, "parse genie corpus")
        pieces = [p for p in parsed if p is not None]
        print(f"parsed {len(pieces)}/{len(files)} scores in {time.monotonic() - t0:.0f} s",
              flush=True)
        return [(p.piece_id, p.collection, p.split, p.onsets, p.pitches) for p in pieces]

    return [Piece(*row) for row in common.cached(name, build, CACHE_VERSION)]


def by_split(pieces: list[Piece]) -> dict[str, list[Piece]]:
    out: dict[str, list[Piece]] = {s: [] for s in common.SPLITS}
    for p in pieces:
        out[p.split].append(p)
    return out


# --- performance-like timing, drawn per window ------------------------------------------

@dataclass
class Window:
    keys: np.ndarray     # int32 [T] piano key 0..87
    dt_bins: np.ndarray  # int32 [T] time since the previous onset, enc.dt_to_bin; 0 first
    seconds: np.ndarray  # float32 [T] onset times (for inspection)


def perform(onsets_q: np.ndarray, pitches: np.ndarray, rng: np.random.Generator,
            transpose: bool = True) -> Window:
    """Turn score onsets into one plausible performance of them.

    A quarter lasts 0.25-0.9 s, the tempo drifts by up to +-25% across the window, onsets
    jitter by ~12 ms (chord notes get their own small spread, so their order shuffles, as
    when a hand rolls a chord), and the whole window is transposed by -6..+6 semitones.
    """
    n = len(onsets_q)
    q = onsets_q.astype(np.float64) - float(onsets_q[0])
    sec_per_q = rng.uniform(0.25, 0.9)
    span = max(q[-1], 1e-6)
    drift = rng.uniform(-0.25, 0.25)
    # local tempo factor varies linearly over the window: integrate it for the onset time
    frac = q / span
    t = sec_per_q * (q + drift * span * frac * frac / 2.0)
    t = t + rng.normal(0.0, 0.012, size=n)
    order = np.argsort(t, kind="stable")
    t = np.sort(t)
    p = pitches[order].astype(np.int32)
    if transpose:
        p = p + int(rng.integers(-6, 7))
    p = fold_into_piano(p).astype(np.int32)
    dt = np.diff(t, prepend=t[0])
    bins = np.minimum(enc.DT_MAX_BIN, np.round(np.maximum(dt, 0.0) * enc.DT_BINS_PER_SECOND))
    return Window(p - enc.PIANO_LOWEST, bins.astype(np.int32), t.astype(np.float32))


class WindowSampler:
    """Random fixed-length windows from a list of pieces, each piece weighted by its length."""

    def __init__(self, pieces: list[Piece], length: int, seed: int = 0):
        self.pieces = [p for p in pieces if len(p.pitches) >= 2]
        if not self.pieces:
            raise ValueError("no pieces to sample windows from")
        self.length = length
        sizes = np.array([max(1, len(p.pitches) - length + 1)
                          * COLLECTION_WEIGHT.get(p.collection, 1.0) for p in self.pieces])
        self.weights = sizes / sizes.sum()
        self.rng = np.random.default_rng(seed)

    def window(self) -> Window:
        rng = self.rng
        p = self.pieces[rng.choice(len(self.pieces), p=self.weights)]
        start = int(rng.integers(0, max(1, len(p.pitches) - self.length + 1)))
        sl = slice(start, start + self.length)
        w = perform(p.onsets[sl], p.pitches[sl], rng)
        if len(w.keys) < self.length:  # short piece: pad by repeating it (rare)
            reps = -(-self.length // len(w.keys))
            w = Window(np.tile(w.keys, reps)[:self.length],
                       np.tile(w.dt_bins, reps)[:self.length],
                       np.tile(w.seconds, reps)[:self.length])
        return w

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """keys [B, T] int32 and dt bins [B, T] int32."""
        ws = [self.window() for _ in range(size)]
        return (np.stack([w.keys for w in ws]), np.stack([w.dt_bins for w in ws]))

    def batches(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield self.batch(size)


def fixed_windows(pieces: list[Piece], length: int, seed: int = 1234,
                  max_windows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic evaluation windows: consecutive non-overlapping windows of every piece,
    each with one seeded performance timing (no transposition)."""
    rng = np.random.default_rng(seed)
    keys, dts = [], []
    for p in sorted(pieces, key=lambda x: x.piece_id):
        for s in range(0, len(p.pitches) - length + 1, length):
            w = perform(p.onsets[s:s + length], p.pitches[s:s + length], rng, transpose=False)
            keys.append(w.keys)
            dts.append(w.dt_bins)
    if max_windows is not None and len(keys) > max_windows:
        idx = np.sort(np.random.default_rng(seed).choice(len(keys), max_windows, replace=False))
        keys = [keys[i] for i in idx]
        dts = [dts[i] for i in idx]
    return np.stack(keys).astype(np.int32), np.stack(dts).astype(np.int32)


def stats(pieces: list[Piece]) -> dict:
    """Pieces and notes per split and per collection (for the model card)."""
    out: dict = {"pieces": {}, "notes": {}, "collections": {}}
    for p in pieces:
        out["pieces"][p.split] = out["pieces"].get(p.split, 0) + 1
        out["notes"][p.split] = out["notes"].get(p.split, 0) + len(p.pitches)
        c = out["collections"].setdefault(p.collection, [0, 0])
        c[0] += 1
        c[1] += len(p.pitches)
    return out


def main() -> None:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="files per collection (smoke)")
    args = ap.parse_args()
    pieces = load_pieces(limit=args.limit)
    st = stats(pieces)
    print("pieces per split:", st["pieces"])
    print("notes per split:", st["notes"])
    for c, (np_, nn) in sorted(st["collections"].items(), key=lambda kv: -kv[1][1]):
        print(f"  {c:16s} {np_:5d} pieces {nn:8d} notes")


if __name__ == "__main__":
    main()
