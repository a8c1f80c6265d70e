"""Melody training data from the music21 corpus (inside its wheel: no network).

Collections: Essen folksongs, O'Neill's 1850, Ryan's Mammoth, Aird's Airs, misc folk (ABC
files holding many tunes each, split per tune so the parse spreads over every core) and the
soprano lines of the Bach chorales (MusicXML). Each tune becomes a :class:`Melody`:
monophonic notes on the 16th-note grid, octave-shifted into MIDI 48-84, and their event
tokens (:func:`piano_buddy.melody.notes_to_events`, the same code the firmware uses).

Tunes that leave the grid (triplets, grace-note tricks) or span more than the range are
skipped, with the reason counted. The split is by piece (:func:`common.split_of` of the
piece id ``collection/file#X``), never by window.

``python -m models_tflite.training.melody_data [--limit N]`` parses (cached) and prints
the counts per collection and split.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from piano_buddy.encoding import MELODY_MAX_PITCH, MELODY_MIN_PITCH, STEPS_PER_QUARTER
from piano_buddy.melody import StepNote, notes_to_events, octave_shift_into_range

from . import common

ABC_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs", "miscFolk")
CHORALE_COLLECTION = "bach"
DATA_VERSION = "1"
MIN_NOTES = 8
MAX_OFF_GRID = 0.1  # share of notes rounded onto the grid before a tune is skipped


@dataclass
class Melody:
    piece_id: str
    collection: str
    split: str
    notes: list[StepNote]
    tokens: np.ndarray  # int8 event tokens, one per 16th step


def _corpus_root() -> Path:
    from music21 import corpus
    return Path(corpus.corpora.CoreCorpus().manualCoreCorpusPath or
                Path(corpus.__file__).parent)


def list_pieces(limit_per_collection: int | None = None) -> list[tuple[str, str, str]]:
    """(piece id, format, payload) for every tune: ABC text per tune, or a MusicXML path."""
    from music21 import corpus
    items: list[tuple[str, str, str]] = []
    for coll in ABC_COLLECTIONS:
        n = 0
        for path in sorted(corpus.getComposer(coll)):
            path = Path(path)
            rel = f"{coll}/{path.name}"
            for number, text in split_abc(path.read_text(encoding="utf-8", errors="replace")):
                items.append((f"{rel}#{number}", "abc", text))
                n += 1
                if limit_per_collection and n >= limit_per_collection:
                    break
            if limit_per_collection and n >= limit_per_collection:
                break
    n = 0
    for path in sorted(corpus.getComposer(CHORALE_COLLECTION)):
        path = Path(path)
        if path.suffix not in (".mxl", ".xml", ".musicxml"):
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
    except Exception as exc:  # music21 raises many kinds on odd ABC
        return f"parse error: {type(exc).__name__}"
    if isinstance(notes, str):
        return notes
    if len(notes) < MIN_NOTES:
        return "too few notes"
    pitches = [n.pitch for n in notes]
    shift = octave_shift_into_range(pitches)
    if not all(MELODY_MIN_PITCH <= p + shift <= MELODY_MAX_PITCH for p in pitches):
        return "span wider than the range"
    notes = [StepNote(n.pitch + shift, n.start, n.end) for n in notes]
    tokens = np.asarray(notes_to_events(notes), np.int8)
    coll = piece_id.split("/", 1)[0]
    return Melody(piece_id, coll, common.split_of(piece_id), notes, tokens)


def _grid_notes(stream) -> list[StepNote] | str:
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
    if notes and notes[0].start > 0:  # drop a leading rest
        first = notes[0].start
        notes = [StepNote(p, s - first, e - first) for p, s, e in notes]
    return notes


def load_melodies(limit_per_collection: int | None = None, workers: int | None = None
                  ) -> dict:
    """{"melodies": [Melody], "skipped": Counter of reasons}, parsed once and cached."""
    name = "melodies" if not limit_per_collection else f"melodies-limit{limit_per_collection}"

    def build():
        items = list_pieces(limit_per_collection)
        results = common.parallel_map(parse_piece, items, "parsing melodies", workers=workers)
        melodies = [r for r in results if isinstance(r, Melody)]
        skipped = Counter(r for r in results if isinstance(r, str))
        return {"melodies": melodies, "skipped": skipped}

    return common.cached(name, build, version=DATA_VERSION)


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
