"""`make eval`'s harmony table: the firmware's harmonizer (piano_buddy.harmony) on the soprano
lines of Bach chorales, beside what Bach's own bass does under the same lines.

Data: the four-part chorales of music21's ``bach`` folder whose encodings carry no restrictive
licence note (the Genie's filter, genie_data.licence_note), parsed with music21; the soprano is
the first part, the bass the last; time in quarter notes, a beat = one quarter.
Figures (issue 14's targets):

* in key: the share of accompaniment notes whose pitch class is in the chorale's key as
  music21 analyses it (Krumhansl-Schmuckler on the whole chorale, an estimate independent of
  ours), the minor's raised 6th and 7th counted in; target >= 95%;
* chord tones: the share of strong-beat melody notes (music21 beat strength >= 0.5) that are
  a tone of the accompaniment sounding with them; target >= 85%;
* parallels: parallel fifths or octaves between bass and melody per consecutive melody-note
  pair, ours beside the chorales' own bass; target: no more often than the chorales.
"""

from __future__ import annotations

import argparse
import sys

from piano_buddy.harmony import harmonize, parallel

from .genie_data import corpus_files, corpus_root


def chorales(limit: int) -> list:
    import music21

    rels, _excluded = corpus_files({"bach": "vocal"}, noncommercial_build=False)
    out = []
    for rel in rels:
        try:
            score = music21.converter.parse(str(corpus_root() / rel))
        except Exception:
            continue
        if len(score.parts) != 4:
            continue
        out.append(score)
        if len(out) >= limit:
            break
    return out


def _line(part) -> list[tuple[int, float, float, float]]:
    """(midi, start, end, beat strength) per note of a part (ties joined, rests skipped)."""
    notes = []
    for n in part.flatten().stripTies().notes:
        if n.isChord:
            n = n.notes[-1]
        start = float(n.getOffsetInHierarchy(part))
        notes.append((n.pitch.midi, start, start + float(n.quarterLength), float(n.beatStrength)))
    return notes


def _sounding(line, t: float) -> int | None:
    for p, s, e, *_ in line:
        if s <= t < e:
            return p
    return None


def measure(scores) -> dict[str, float]:
    in_key = acc_notes = tones = strong = 0
    ours_par = theirs_par = pairs = 0
    for score in scores:
        key = score.analyze("key")
        scale = {p.pitchClass for p in key.pitches}
        if key.mode == "minor":
            scale |= {(key.tonic.pitchClass + 9) % 12, (key.tonic.pitchClass + 11) % 12}
        soprano, bass = _line(score.parts[0]), _line(score.parts[-1])
        plan = harmonize([(p, s, e) for p, s, e, _b in soprano], beat=1.0)
        changes = [at for at, _acc in plan]
        for _at, acc in plan:
            acc_notes += len(acc.pitches)
            in_key += sum(p % 12 in scale for p in acc.pitches)

        def acc_at(t):
            i = max((k for k, c in enumerate(changes) if c <= t), default=None)
            return plan[i][1] if i is not None else None
        prev_ours = prev_theirs = None
        for p, s, _e, strength in soprano:
            acc = acc_at(s)
            if strength >= 0.5 and acc is not None:
                strong += 1
                tones += p % 12 in acc.chord.tones
            real_bass = _sounding(bass, s)
            if acc is not None:
                pairs += 1
                ours_par += parallel(prev_ours, acc.bass, p)
                prev_ours = (acc.bass, p)
            if real_bass is not None:
                theirs_par += parallel(prev_theirs, real_bass, p)
                prev_theirs = (real_bass, p)
    return {"chorales": len(scores), "in_key": in_key / max(1, acc_notes),
            "chord_tones": tones / max(1, strong), "parallels_ours": ours_par / max(1, pairs),
            "parallels_bach": theirs_par / max(1, pairs)}


def table(m: dict[str, float]) -> str:
    rows = [f"Harmony ({m['chorales']:.0f} licence-clean Bach chorales' soprano lines, "
            "piano_buddy.harmony)",
            f"  {'figure':<52}{'ours':>9}{'target':>14}",
            f"  {'accompaniment notes in key':<52}{100 * m['in_key']:>8.1f}%{'>= 95%':>14}",
            f"  {'strong-beat melody notes that are chord tones':<52}"
            f"{100 * m['chord_tones']:>8.1f}%{'>= 85%':>14}",
            f"  {'parallel 5ths/8ves bass-melody per note pair':<52}"
            f"{100 * m['parallels_ours']:>8.2f}%"
            f"{'<= ' + format(100 * m['parallels_bach'], '.2f') + '%':>14}  (Bach's own bass)"]
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chorales", type=int, default=60)
    args = ap.parse_args(argv)
    m = measure(chorales(args.chorales))
    print(table(m))
    met = m["in_key"] >= 0.95 and m["chord_tones"] >= 0.85 and \
        m["parallels_ours"] <= m["parallels_bach"]
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
