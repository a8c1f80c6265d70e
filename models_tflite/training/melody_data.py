"""Melody training data from the music21 corpus (inside its wheel: no network).

Collections: O'Neill's 1850, Ryan's Mammoth, Aird's Airs, misc folk (ABC files holding many
tunes each, split per tune so the parse spreads over every core) and the soprano lines of
the Bach chorales (MusicXML). The Essen folksongs are licensed "for non-commercial
distribution and use ... in music21" only: they are added by the non-commercial build flag
``MELODY_NONCOMMERCIAL=1`` (as ``GENIE_NONCOMMERCIAL=1`` does for the Genie), never in the
committed model. The decision per folder is in :data:`LICENCE`; every file taken is also
searched for a restricting note (:func:`genie_data.licence_note`, the Genie's per-file check).

Each tune becomes a :class:`Melody`: monophonic notes on the 16th-note grid, octave-shifted
into MIDI 48-84, their event tokens (:func:`piano_buddy.melody.notes_to_events`, the same
code the firmware uses) and the position of every step in its bar, read from the score's
measures (:func:`bar_positions`), which the model gets beside each token.

Tunes that leave the grid (triplets, grace-note tricks) or span more than the range are
skipped, with the reason counted. The split is by piece (:func:`common.split_of` of the
piece id ``collection/file#X``), never by window.

``python -m models_tflite.training.melody_data [--limit N]`` parses (cached) and prints
the counts per collection and split.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from piano_buddy.encoding import MELODY_MAX_PITCH, MELODY_MIN_PITCH, STEPS_PER_QUARTER
from piano_buddy.melody import StepNote, notes_to_events, octave_shift_into_range

from . import common

# Per corpus folder: may a commercial product be trained on it? (checked in music21 10.5.1's
# corpus: the folder's license.txt where there is one, and every file's own text)
LICENCE = {
    "oneills1850": (True, "no licence file, no note in any file (transcribers named in Z:); "
                          "the 1903 book is public domain"),
    "ryansMammoth": (True, "no licence file, no note in any file (Ray Davies and others "
                           "named in Z:); the 1883 book is public domain"),
    "airdsAirs": (True, "no licence file, no note in any file (Jack Campin named in Z:); "
                        "the 1778-1803 books are public domain"),
    "miscFolk": (True, "no licence file, no note in either file (Jack Campin's edits of "
                       "colonial fife tunes and the 1882 Northumbrian Minstrelsy)"),
    "bach": (True, "the soprano lines of the MusicXML chorales: no note in those files "
                   "(three .krn files carry a CCARH reservation; we read no .krn)"),
    "essenFolksong": (False, "corpus/essenFolksong/license.txt: \"permission for "
                             "non-commercial distribution and use of these files in "
                             "music21\""),
}
ABC_ORDER = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs", "miscFolk")
CHORALE_COLLECTION = "bach"
DATA_VERSION = "2"  # v2: bar positions per step; licence per folder
MIN_NOTES = 8
MAX_OFF_GRID = 0.1  # share of notes rounded onto the grid before a tune is skipped


def noncommercial() -> bool:
    """The build flag for non-commercial installations (adds the Essen folksongs)."""
    return os.environ.get("MELODY_NONCOMMERCIAL", "") not in ("", "0")


def abc_collections(noncommercial_build: bool | None = None) -> tuple[str, ...]:
    """The ABC folders a build takes: the commercial ones, plus Essen with the flag."""
    nc = noncommercial() if noncommercial_build is None else noncommercial_build
    return tuple(c for c in ABC_ORDER if LICENCE[c][0] or nc)


@dataclass
class Melody:
    piece_id: str
    collection: str
    split: str
    notes: list[StepNote]
    tokens: np.ndarray   # int8 event tokens, one per 16th step
    bar_pos: np.ndarray  # int8 position of each step in its bar (0 = downbeat), same length
    bar_steps: int = 16  # the first full bar's length in steps (4/4: 16, 3/4 and 6/8: 12)


def _corpus_root() -> Path:
    from music21 import corpus
    return Path(corpus.corpora.CoreCorpus().manualCoreCorpusPath or
                Path(corpus.__file__).parent)


def list_pieces(limit_per_collection: int | None = None, collections: Sequence[str] | None = None,
                chorales: bool = True) -> list[tuple[str, str, str]]:
    """(piece id, format, payload) for every tune: ABC text per tune, or a MusicXML path.
    A file whose own text restricts its use (:func:`genie_data.licence_note`) is left out of
    a commercial build."""
    from music21 import corpus
    from .genie_data import licence_note
    nc = noncommercial()
    items: list[tuple[str, str, str]] = []
    for coll in (abc_collections() if collections is None else collections):
        n = 0
        for path in sorted(corpus.getComposer(coll)):
            path = Path(path)
            if not nc and LICENCE[coll][0] and licence_note(path) is not None:
                continue
            rel = f"{coll}/{path.name}"
            for number, text in split_abc(path.read_text(encoding="utf-8", errors="replace")):
                items.append((f"{rel}#{number}", "abc", text))
                n += 1
                if limit_per_collection and n >= limit_per_collection:
                    break
            if limit_per_collection and n >= limit_per_collection:
                break
    n = 0
    for path in sorted(corpus.getComposer(CHORALE_COLLECTION)) if chorales else ():
        path = Path(path)
        if path.suffix not in (".mxl", ".xml", ".musicxml"):
            continue
        if not nc and licence_note(path) is not None:
            continue
        items.append((f"{CHORALE_COLLECTION}/{path.name}", "chorale", str(path)))
        n += 1
        if limit_per_collection and n >= limit_per_collection:
            break
    return items


_X_LINE = re.compile(r"^X:\s*(\S*)", re.M)


def split_abc(text: str) -> list[tuple[str, str]]:
    """Split an ABC book into (X number, tune text); the file header goes before each tune."""
    starts = [m.start() for m in _X_LINE.finditer(text)]
    if not starts:
        return [("1", text)] if text.strip() else []
    header = text[:starts[0]]
    header = "\n".join(line for line in header.splitlines()
                       if not line.startswith(("%", "T:")) and line.strip())
    out, seen = [], Counter()
    for a, b in zip(starts, starts[1:] + [len(text)]):
        tune = text[a:b]
        number = _X_LINE.match(tune).group(1) or "?"
        seen[number] += 1
        if seen[number] > 1:  # duplicate X numbers in a book: keep ids unique
            number = f"{number}.{seen[number]}"
        out.append((number, (header + "\n" if header else "") + tune))
    return out


def parse_piece(item: tuple[str, str, str]) -> Melody | str:
    """A :class:`Melody`, or a short reason string when the tune is skipped."""
    piece_id, fmt, payload = item
    try:
        from music21 import converter
        if fmt == "abc":
            score = converter.parse(payload, format="abc")
        else:
            score = converter.parse(payload)
        parts = list(getattr(score, "parts", []))
        if fmt == "chorale":
            if len(parts) < 4:
                return "not a 4-part chorale"
            stream = parts[0]
        else:
            stream = parts[0] if parts else score
        notes = _grid_notes(stream)
        if isinstance(notes, str):
            return notes
        notes, first = notes
        bars, bar_steps = bar_positions(stream)
    except Exception as exc:  # music21 raises many kinds on odd ABC
        return f"parse error: {type(exc).__name__}"
    if len(notes) < MIN_NOTES:
        return "too few notes"
    pitches = [n.pitch for n in notes]
    shift = octave_shift_into_range(pitches)
    if not all(MELODY_MIN_PITCH <= p + shift <= MELODY_MAX_PITCH for p in pitches):
        return "span wider than the range"
    notes = [StepNote(n.pitch + shift, n.start, n.end) for n in notes]
    tokens = np.asarray(notes_to_events(notes), np.int8)
    pos = extend_positions(bars[first:], len(tokens), bar_steps)
    coll = piece_id.split("/", 1)[0]
    return Melody(piece_id, coll, common.split_of(piece_id), notes, tokens, pos, bar_steps)


def bar_positions(stream) -> tuple[np.ndarray, int]:
    """(position in its bar of every 16th step of the part, first full bar's length).

    From the part's measures: a measure starts a bar at its offset, except a short one that
    completes a bar: the pickup (music21's ``paddingLeft``, or a short first measure) and
    the second of two short measures in a row (a bar split by a repeat sign, ``B2:: Bc|``),
    which end on the next downbeat instead. A measure longer than its time signature wraps.
    """
    measures = list(stream.getElementsByClass("Measure"))
    out: list[int] = []
    bar_steps = None
    prev_short_left = False
    for i, m in enumerate(measures):
        start = int(round(float(m.offset) * STEPS_PER_QUARTER))
        dur = int(round(float(m.duration.quarterLength) * STEPS_PER_QUARTER))
        try:
            length = int(round(float(m.barDuration.quarterLength) * STEPS_PER_QUARTER))
        except Exception:  # no time signature: music21 assumes 4/4 as well
            length = 4 * STEPS_PER_QUARTER
        length = max(1, min(length, 32))
        if dur >= length and bar_steps is None:
            bar_steps = length
        shift = 0
        if dur < length:
            pad = int(round(float(m.paddingLeft or 0) * STEPS_PER_QUARTER))
            if pad > 0 or i == 0 or prev_short_left:
                shift = pad if pad > 0 else length - dur
                prev_short_left = False
            else:
                prev_short_left = True
        else:
            prev_short_left = False
        out = list(extend_positions(np.asarray(out, np.int64), start, length))  # gap/overlap
        out += [(shift + k) % length for k in range(max(0, dur))]
    return np.asarray(out, np.int8), bar_steps or 4 * STEPS_PER_QUARTER


def extend_positions(pos: np.ndarray, total: int, bar_steps: int) -> np.ndarray:
    """``pos`` cut or continued (counting on in bars of ``bar_steps``) to ``total`` steps."""
    pos = [int(p) for p in pos[:total]]
    while len(pos) < total:
        nxt = pos[-1] + 1 if pos else 0
        pos.append(nxt if nxt < bar_steps else 0)
    return np.asarray(pos, np.int8)


def _grid_notes(stream) -> tuple[list[StepNote], int] | str:
    """(notes with a leading rest dropped, the steps dropped), or why the tune is skipped."""
    flat = stream.stripTies().flatten()
    notes = []
    off_grid = 0
    for n in flat.notes:
        ql = float(n.quarterLength)
        if ql <= 0:  # grace note: not on any grid, not essential
            continue
        start = float(n.offset) * STEPS_PER_QUARTER
        end = start + ql * STEPS_PER_QUARTER
        if abs(start - round(start)) > 1e-3 or abs(end - round(end)) > 1e-3:
            off_grid += 1  # dotted-32nd snaps and the odd triplet: rounded to the grid
        pitch = max(p.midi for p in n.pitches)
        s = int(round(start))
        notes.append(StepNote(int(pitch), s, max(s + 1, int(round(end)))))
    if off_grid > MAX_OFF_GRID * max(1, len(notes)):
        return "off the 16th grid"
    notes.sort(key=lambda n: (n.start, -n.pitch))
    first = notes[0].start if notes else 0
    if first > 0:  # drop a leading rest
        notes = [StepNote(p, s - first, e - first) for p, s, e in notes]
    return notes, first


def load_melodies(limit_per_collection: int | None = None, workers: int | None = None
                  ) -> dict:
    """{"melodies": [Melody], "skipped": Counter of reasons}, parsed once and cached."""
    name = "melodies" if not limit_per_collection else f"melodies-limit{limit_per_collection}"
    if noncommercial():
        name += "-noncommercial"

    def build():
        items = list_pieces(limit_per_collection)
        results = common.parallel_map(parse_piece, items, "parsing melodies", workers=workers)
        melodies = [r for r in results if isinstance(r, Melody)]
        skipped = Counter(r for r in results if isinstance(r, str))
        return {"melodies": melodies, "skipped": skipped}

    return common.cached(name, build, version=DATA_VERSION)


def bar_grid_of(melody: Melody):
    """The :class:`~piano_buddy.phrase.BarGrid` of a melody's opening: its first full bar's
    length, the downbeat placed so that step 0 has the position the score gives it."""
    from piano_buddy.phrase import BarGrid
    return BarGrid(int(melody.bar_steps), -int(melody.bar_pos[0]) if len(melody.bar_pos) else 0)


def load_unseen(collection: str = "essenFolksong", count: int = 260,
                workers: int | None = None) -> list[Melody]:
    """Melodies of a collection the committed model never saw, for evaluation only: every
    k-th tune of ``collection`` (the Essen folksongs: measuring on them is a non-commercial
    use; nothing trained on them ships), ``count`` of them, parsed once and cached."""
    def build():
        items = list_pieces(None, collections=(collection,), chorales=False)
        k = max(1, len(items) // count)
        results = common.parallel_map(parse_piece, items[::k][:count],
                                      f"parsing unseen {collection}", workers=workers)
        return [r for r in results if isinstance(r, Melody)]

    return common.cached(f"unseen-{collection}-{count}", build, version=DATA_VERSION)


def by_split(melodies: list[Melody]) -> dict[str, list[Melody]]:
    out: dict[str, list[Melody]] = {s: [] for s in common.SPLITS}
    for m in melodies:
        out[m.split].append(m)
    return out


def summary(data: dict) -> str:
    rows = Counter((m.collection, m.split) for m in data["melodies"])
    steps = Counter()
    notes = Counter()
    for m in data["melodies"]:
        steps[m.split] += len(m.tokens)
        notes[m.split] += len(m.notes)
    colls = sorted({c for c, _ in rows})
    lines = [f"{'collection':<16}" + "".join(f"{s:>8}" for s in common.SPLITS)]
    for c in colls:
        lines.append(f"{c:<16}" + "".join(f"{rows[(c, s)]:>8}" for s in common.SPLITS))
    lines.append(f"{'melodies':<16}" + "".join(
        f"{sum(rows[(c, s)] for c in colls):>8}" for s in common.SPLITS))
    lines.append(f"{'notes':<16}" + "".join(f"{notes[s]:>8}" for s in common.SPLITS))
    lines.append(f"{'16th steps':<16}" + "".join(f"{steps[s]:>8}" for s in common.SPLITS))
    lines.append("skipped: " + ", ".join(f"{k}: {v}" for k, v in data["skipped"].most_common()))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="tunes per collection (smoke)")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    # run as __main__, Melody would pickle as __main__.Melody: go through the package name
    from models_tflite.training import melody_data
    data = melody_data.load_melodies(args.limit, args.workers)
    print(summary(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
