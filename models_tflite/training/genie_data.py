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
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from piano_buddy import encoding as enc

from . import common, genie_textures

CACHE_VERSION = "3"  # v3: licence filter, piece kind recorded
# Corpus folders (music21's composer directories) we take, in order, with the kind of music
# each holds (the window sampler weights and textures by kind). Roman-numeral analyses
# (.rntxt) carry no notes worth playing and are skipped.
COLLECTIONS = {
    # piano and keyboard music
    "joplin": "keyboard", "chopin": "keyboard", "schumann_clara": "keyboard",
    "schumann_robert": "keyboard", "cpebach": "keyboard", "beach": "keyboard",
    "handel": "keyboard", "schubert": "keyboard", "webern": "keyboard",
    "liliuokalani": "keyboard", "johnson_j_r": "keyboard", "schoenberg": "keyboard",
    "weber": "keyboard",
    # string quartets and other ensembles
    "mozart": "ensemble", "beethoven": "ensemble", "haydn": "ensemble", "corelli": "ensemble",
    "verdi": "ensemble",
    # chorales (all four voices) and vocal polyphony
    "bach": "vocal", "monteverdi": "vocal", "trecento": "vocal", "luca": "vocal",
    "ciconia": "vocal", "josquin": "vocal", "lusitano": "vocal",
}
# Folders whose encodings forbid commercial use as a whole: added only by the
# non-commercial build flag (GENIE_NONCOMMERCIAL=1). Palestrina: "Copyright 2000, John
# Miller ... Rights to all derivative electronic formats reserved" in every file.
NONCOMMERCIAL_COLLECTIONS = {"palestrina": "vocal"}
# File-level licence notes that keep a file out of the commercial build (checked in the
# file's own text, see licence_note): CCARH's "derivative electronic formats reserved", a
# publisher's copyright, or a copyright line with no holder or terms.
RESTRICTED_NOTES = (
    ("rights reserved", re.compile(rb"rights[^\n<]{0,40}reserved|all rights reserved", re.I)),
    ("CCARH copyright", re.compile(rb"Center for Computer Assisted Research|CCARH", re.I)),
    ("publisher copyright", re.compile(rb"EDIZIONI", re.I)),
    ("copyright without terms", re.compile(rb"<rights>\s*(Copyright\s*)?\xc2\xa9\s*</rights>",
                                           re.I)),
)
SKIP_SUFFIXES = (".rntxt", ".txt", ".py", ".json", ".pyc")
# Pieces longer than this many notes are cut (a few Trecento/Beethoven files are huge and
# would dominate sampling; cutting them also bounds the parse time).
MAX_NOTES_PER_PIECE = 20000


def noncommercial() -> bool:
    """The build flag for non-commercial installations (adds the restricted encodings)."""
    return os.environ.get("GENIE_NONCOMMERCIAL", "") not in ("", "0")


@dataclass
class Piece:
    piece_id: str      # path inside the corpus, e.g. "bach/bwv66.6.mxl"
    collection: str
    kind: str          # "keyboard", "ensemble" or "vocal" (COLLECTIONS)
    split: str
    onsets: np.ndarray   # float32, quarter notes, non-decreasing
    pitches: np.ndarray  # int16 MIDI pitches


def corpus_root() -> Path:
    import music21
    return Path(music21.__file__).resolve().parent / "corpus"


def collections(noncommercial_build: bool | None = None) -> dict[str, str]:
    """Folder -> kind of every corpus folder the build takes."""
    nc = noncommercial() if noncommercial_build is None else noncommercial_build
    return {**COLLECTIONS, **(NONCOMMERCIAL_COLLECTIONS if nc else {})}


def licence_note(path: Path) -> str | None:
    """The restriction named in a score file's own text (None: nothing restrictive found).

    Compressed MusicXML (.mxl) is a zip: its members are read. Only the first 200 kB are
    searched (the header, where encoders put their notes).
    """
    import zipfile
    try:
        if path.suffix == ".mxl":
            with zipfile.ZipFile(path) as z:
                data = b"".join(z.read(n)[:200_000] for n in z.namelist()
                                if not n.startswith("META-INF"))
        else:
            data = path.read_bytes()[:200_000]
    except (OSError, zipfile.BadZipFile):
        return "unreadable"
    for name, pattern in RESTRICTED_NOTES:
        if pattern.search(data):
            return name
    return None


def corpus_files(colls: dict[str, str] | None = None,
                 noncommercial_build: bool | None = None) -> tuple[list[str], dict[str, str]]:
    """(relative paths of every score we parse, {path: licence note} of the files left out),
    sorted for a stable order. The non-commercial build keeps the noted files too."""
    nc = noncommercial() if noncommercial_build is None else noncommercial_build
    colls = collections(nc) if colls is None else colls
    root = corpus_root()
    out, excluded = [], {}
    for coll in colls:
        base = root / coll
        if not base.is_dir():
            continue
        for dirpath, _, files in os.walk(base):
            for f in files:
                if f.startswith(".") or f.endswith(SKIP_SUFFIXES) or f == "__init__.py":
                    continue
                path = Path(dirpath) / f
                rel = str(path.relative_to(root))
                note = licence_note(path)
                if note is not None and not nc:
                    excluded[rel] = note
                    continue
                out.append(rel)
    return sorted(out), dict(sorted(excluded.items()))


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
    coll = rel.split("/", 1)[0]
    return Piece(rel, coll, collections(True).get(coll, "vocal"), common.split_of(rel),
                 arr[:, 0].astype(np.float32), pitches)


def fold_into_piano(pitches: np.ndarray) -> np.ndarray:
    """Move pitches outside A0-C8 into the keyboard by whole octaves."""
    p = pitches.astype(np.int16).copy()
    while (low := p < enc.PIANO_LOWEST).any():
        p[low] += 12
    while (high := p > enc.PIANO_HIGHEST).any():
        p[high] -= 12
    return p


def load_pieces(limit: int | None = None) -> list[Piece]:
    """All parsed pieces of this build (cached). ``limit`` parses only the first few files
    of each collection (smoke runs); those results are cached under another name."""
    files, _ = corpus_files()
    tag = "-noncommercial" if noncommercial() else ""
    if limit is not None:
        by_coll: dict[str, list[str]] = {}
        for f in files:
            by_coll.setdefault(f.split("/", 1)[0], []).append(f)
        files = [f for fs in by_coll.values() for f in fs[:limit]]
        name = f"genie-pieces{tag}-limit{limit}-{len(files)}"
    else:
        name = f"genie-pieces{tag}"

    def build():
        t0 = time.monotonic()
        parsed = common.parallel_map(parse_piece, files, "parse genie corpus")
        pieces = [p for p in parsed if p is not None]
        print(f"parsed {len(pieces)}/{len(files)} scores in {time.monotonic() - t0:.0f} s",
              flush=True)
        return [(p.piece_id, p.collection, p.kind, p.split, p.onsets, p.pitches)
                for p in pieces]

    return [Piece(*row) for row in common.cached(name, build, CACHE_VERSION)]


def drop_unisons(piece: Piece) -> Piece:
    """One press per key per onset: two voices on the same pitch at the same time (a
    quartet's or a chorale's unison) are one key at the piano, not a repeated note. They
    were 4.5% of the training notes and most of its "repeated keys" (6.3% of steps)."""
    on, pi = piece.onsets, piece.pitches
    keep = np.ones(len(pi), bool)
    keep[1:] = ~((np.diff(on) < 1e-6) & (np.diff(pi) == 0))  # events are sorted (onset, pitch)
    if keep.all():
        return piece
    return Piece(piece.piece_id, piece.collection, piece.kind, piece.split, on[keep], pi[keep])


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


TRANSPOSE_MODES = ("keyboard", "narrow", "none")


def transposition(pitches: np.ndarray, mode: str, rng: np.random.Generator) -> int:
    """Semitones to move one window by.

    ``keyboard``: anywhere the window fits on the 88 keys, uniformly (octave shifts
    included), so that a button cannot stand for an absolute height and the decoder must
    read the previous key; ``narrow``: -6..+6 (the first recipe); ``none``: 0.
    """
    if mode == "none":
        return 0
    if mode == "narrow":
        return int(rng.integers(-6, 7))
    lo, hi = int(pitches.min()), int(pitches.max())
    first, last = enc.PIANO_LOWEST - lo, enc.PIANO_HIGHEST - hi
    return int(rng.integers(first, last + 1)) if first <= last else 0


TEMPO_DEFAULT = (0.25, 0.9)  # seconds per quarter, uniform (the committed recipe)


def perform(onsets_q: np.ndarray, pitches: np.ndarray, rng: np.random.Generator,
            transpose: str = "keyboard", tempo: tuple[float, float] | None = None,
            log_tempo: bool = False) -> Window:
    """Turn score onsets into one plausible performance of them.

    A quarter lasts ``tempo`` seconds (0.25-0.9 unless given; drawn log-uniformly when
    ``log_tempo``), the tempo drifts by up to +-25% across the window, onsets jitter by
    ~12 ms (chord notes get their own small spread, so their order shuffles, as when a hand
    rolls a chord), and the window is transposed (:func:`transposition`).
    """
    n = len(onsets_q)
    q = onsets_q.astype(np.float64) - float(onsets_q[0])
    lo, hi = tempo or TEMPO_DEFAULT
    sec_per_q = (float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if log_tempo
                 else rng.uniform(lo, hi))
    span = max(q[-1], 1e-6)
    drift = rng.uniform(-0.25, 0.25)
    # local tempo factor varies linearly over the window: integrate it for the onset time
    frac = q / span
    t = sec_per_q * (q + drift * span * frac * frac / 2.0)
    t = t + rng.normal(0.0, 0.012, size=n)
    order = np.argsort(t, kind="stable")
    t = np.sort(t)
    p = fold_into_piano(pitches[order].astype(np.int32)).astype(np.int32)
    p = fold_into_piano(p + transposition(p, transpose, rng)).astype(np.int32)
    dt = np.diff(t, prepend=t[0])
    bins = np.minimum(enc.DT_MAX_BIN, np.round(np.maximum(dt, 0.0) * enc.DT_BINS_PER_SECOND))
    return Window(p - enc.PIANO_LOWEST, bins.astype(np.int32), t.astype(np.float32))


# Repeated keys are thinned by the gap before them (Recipe.repeat_keep): none survive a gap
# up to REPEAT_FAST_S, ``repeat_keep`` of them from REPEAT_SLOW_S on, linearly between.
REPEAT_FAST_S, REPEAT_SLOW_S = 0.15, 0.6


def thin_repeats(w: Window, keep_slow: float, rng: np.random.Generator) -> Window:
    """Drop a note that repeats the key before it, more often the sooner it comes.

    A child hammering one button fast wants a run, not one key; at the keyboard a fast
    repeated key is rare (a trill alternates), a slow one is a tune's repeated note. In the
    scores, a repeated button's most likely key was the same key (21-38% of same-button
    steps at the walks' pace), so the decoder learnt "same button, same key" and the
    sharpened sampling of the box (T=0.25) played it on most repeated presses. Thinning
    the repeats by their gap makes a repeat the exception, and the time between presses
    says how likely it is (dt carries information). Measured (MODEL_CARD.md, sweeps): alone,
    at keep 0.5, it did not move the walks' repeat rate; with the decoder's interval bias it
    is what makes fast playing run on and slow playing repeat, so it is on (1.0: every slow
    repeat kept, MODEL_CARD.md)."""
    t = w.seconds.astype(np.float64)
    keep = np.ones(len(w.keys), bool)
    last = 0
    ramp = REPEAT_SLOW_S - REPEAT_FAST_S
    for i in range(1, len(w.keys)):
        if w.keys[i] == w.keys[last]:
            gap = t[i] - t[last]
            p = keep_slow * min(1.0, max(0.0, (gap - REPEAT_FAST_S) / ramp))
            if rng.random() >= p:
                keep[i] = False
                continue
        last = i
    t = t[keep]
    dt = np.diff(t, prepend=t[0])
    bins = np.minimum(enc.DT_MAX_BIN, np.round(np.maximum(dt, 0.0) * enc.DT_BINS_PER_SECOND))
    return Window(w.keys[keep], bins.astype(np.int32), t.astype(np.float32))


@dataclass(frozen=True)
class Recipe:
    """How training windows are drawn (the variants compared by the walk figures)."""
    transpose: str = "keyboard"      # TRANSPOSE_MODES
    # Rewrite windows into keyboard textures (genie_textures). Measured, not taken: in the
    # sweep (MODEL_CARD.md) textures gave slightly less spread and more repeated keys on
    # the walks than the scores as written with whole-keyboard transposition.
    textures: bool = False
    keyboard_weight: float = 3.0     # sampling weight of piano music per note (others 1)
    # Share of repeated keys kept after a slow gap (thin_repeats); None: all kept (no
    # thinning at all). Measured on the walks at 1500 steps, range weight 10: 0.6 gave 4.1%
    # repeats (under the 5-25% band), 0.8 5.6%, 1.0 9.6% (taken: Magenta's is 9-13%); fast
    # repeats are still thinned (none within 0.15 s). MODEL_CARD.md, the fourth retrain.
    repeat_keep: float | None = 1.0
    # One press per key per onset in every split (drop_unisons; applied by the build).
    drop_unisons: bool = True
    # Seconds per quarter of the training windows' performances (perform), drawn
    # log-uniformly when log_tempo. A wider range fills the fast dt bins (0.05-0.1 s
    # between presses) with the score's runs and the slow ones with its long notes.
    tempo: tuple[float, float] = TEMPO_DEFAULT
    log_tempo: bool = False

    @classmethod
    def from_env(cls) -> "Recipe":
        d = cls()
        return cls(transpose=os.environ.get("GENIE_TRANSPOSE", d.transpose),
                   textures=os.environ.get("GENIE_TEXTURES", "1" if d.textures else "0")
                   not in ("", "0"),
                   keyboard_weight=float(os.environ.get("GENIE_KEYBOARD_WEIGHT",
                                                        d.keyboard_weight)),
                   repeat_keep=_opt_float(os.environ.get("GENIE_REPEAT_KEEP"),
                                          d.repeat_keep),
                   drop_unisons=os.environ.get("GENIE_DROP_UNISONS",
                                               "1" if d.drop_unisons else "0")
                   not in ("", "0"),
                   tempo=_tempo(os.environ.get("GENIE_TEMPO"), d.tempo),
                   log_tempo=os.environ.get("GENIE_LOG_TEMPO",
                                            "1" if d.log_tempo else "0") not in ("", "0"))


def _tempo(text: str | None, default: tuple[float, float]) -> tuple[float, float]:
    """GENIE_TEMPO="lo,hi" (seconds per quarter)."""
    if not text:
        return default
    lo, hi = (float(x) for x in text.split(","))
    if not 0 < lo <= hi:
        raise ValueError(f"GENIE_TEMPO={text!r}: want 0 < lo <= hi seconds per quarter")
    return lo, hi


def _opt_float(text: str | None, default: float | None) -> float | None:
    if text is None:
        return default
    return None if text.strip().lower() in ("", "none", "off") else float(text)


class WindowSampler:
    """Random fixed-length windows from a list of pieces, each piece weighted by its length
    (and its kind, :class:`Recipe`), each window in a texture drawn for it."""

    def __init__(self, pieces: list[Piece], length: int, seed: int = 0,
                 recipe: Recipe | None = None):
        self.pieces = [p for p in pieces if len(p.pitches) >= 2]
        if not self.pieces:
            raise ValueError("no pieces to sample windows from")
        self.length = length
        self.recipe = recipe or Recipe()
        kw = self.recipe.keyboard_weight
        sizes = np.array([max(1, len(p.pitches) - length + 1)
                          * (kw if p.kind == "keyboard" else 1.0) for p in self.pieces])
        self.weights = sizes / sizes.sum()
        self.rng = np.random.default_rng(seed)

    def window(self) -> Window:
        rng = self.rng
        p = self.pieces[rng.choice(len(self.pieces), p=self.weights)]
        start = int(rng.integers(0, max(1, len(p.pitches) - self.length + 1)))
        texture = (genie_textures.draw(p.kind, rng) if self.recipe.textures
                   else "as_written")
        thin = self.recipe.repeat_keep is not None
        need = self.length + (self.length // 4 if thin else 0)  # room for dropped repeats
        size = need
        while True:  # a texture may thin the notes out (a tune from a chorale): read on
            sl = slice(start, start + size)
            on, pi = genie_textures.apply(texture, p.onsets[sl], p.pitches[sl], rng)
            if len(on) >= need or start + size >= len(p.pitches):
                break
            size *= 2
        w = perform(on[:need], pi[:need], rng, self.recipe.transpose, self.recipe.tempo,
                    self.recipe.log_tempo)
        if thin:
            w = thin_repeats(w, self.recipe.repeat_keep, rng)
            w = Window(w.keys[:self.length], w.dt_bins[:self.length], w.seconds[:self.length])
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
            w = perform(p.onsets[s:s + length], p.pitches[s:s + length], rng, transpose="none")
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
