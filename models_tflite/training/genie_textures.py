"""Keyboard-like textures derived from scores, so the Genie learns to roam a piano.

Chorales, quartets and motets are sung or bowed lines: a window of them spans about two
octaves and moves by small steps, and a decoder trained on them alone learns that a button
owns a fixed band of keys. A pianist's hands do more: broken chords and arpeggios across
octaves, scale runs, octave doublings, a bass in one hand and a tune in the other. Each
texture here rewrites one window of a score (onsets in quarter notes, MIDI pitches, sorted
by onset) into such a figure built from the score's own harmony and line, with the time
subdivision the figure has at the keyboard (runs and arpeggios fast, chords and tunes
slower), so the time between presses carries information as it does in real playing.

All functions are pure numpy and take the random generator: the window sampler draws a
fresh texture for every training window.
"""

from __future__ import annotations

import numpy as np

TEXTURES = ("as_written", "broken_chords", "scale_runs", "octave_doubling", "two_hands")
# Share of windows per texture, by kind of source music (genie_data.COLLECTIONS). Piano
# music is mostly kept as written; sung and bowed lines are mostly rewritten.
TEXTURE_MIX = {
    "keyboard": (0.55, 0.15, 0.1, 0.1, 0.1),
    "ensemble": (0.3, 0.25, 0.15, 0.15, 0.15),
    "vocal": (0.15, 0.3, 0.2, 0.15, 0.2),
}


def chords(onsets: np.ndarray, pitches: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
    """(onset, duration until the next onset, sorted pitches) per distinct onset."""
    starts = np.flatnonzero(np.diff(onsets, prepend=onsets[0] - 1.0) > 1e-6)
    out = []
    for i, s in enumerate(starts):
        e = starts[i + 1] if i + 1 < len(starts) else len(onsets)
        nxt = float(onsets[e]) if e < len(onsets) else float(onsets[s]) + 1.0
        out.append((float(onsets[s]), max(0.25, nxt - float(onsets[s])),
                    np.unique(pitches[s:e])))
    return out


def _sounding(onsets, pitches, durations_hint: float = 2.0):
    """Chords enriched with the notes still sounding from the previous few onsets (a
    quartet's voices enter one at a time; the harmony is what is heard together)."""
    groups = chords(onsets, pitches)
    out = []
    for i, (t, d, ps) in enumerate(groups):
        near = [g[2] for g in groups[max(0, i - 3):i + 1] if t - g[0] < durations_hint]
        out.append((t, d, np.unique(np.concatenate(near))))
    return out


def broken_chords(onsets, pitches, rng):
    """Each harmony as an arpeggio over one to three octaves: up, down, up-and-down or an
    Alberti figure, 4-8 notes filling the harmony's duration."""
    out_t, out_p = [], []
    pattern = rng.choice(("up", "down", "updown", "alberti"))
    span = int(rng.integers(1, 4))  # octaves
    for t, d, ps in _sounding(onsets, pitches):
        pcs = sorted(set(int(p) % 12 for p in ps))
        bass = int(ps.min())
        voicing = sorted({bass + ((pc - bass) % 12) + 12 * o
                          for o in range(span + 1) for pc in pcs})
        voicing = [p for p in voicing if p <= bass + 12 * span] or [bass]
        if pattern == "down":
            seq = voicing[::-1]
        elif pattern == "updown":
            seq = voicing + voicing[-2:0:-1]
        elif pattern == "alberti" and len(voicing) >= 3:
            lo, mid, hi = voicing[0], voicing[len(voicing) // 2], voicing[-1]
            seq = [lo, hi, mid, hi]
        else:
            seq = voicing
        n = int(np.clip(round(d * 4), 2, 8))  # 16ths, as many as fit
        seq = [seq[i % len(seq)] for i in range(max(n, min(len(seq), 8)))]
        step = d / len(seq)
        out_t += [t + i * step for i in range(len(seq))]
        out_p += seq
    return np.asarray(out_t), np.asarray(out_p)


def top_line(onsets, pitches):
    """The highest note of every onset: the tune a right hand plays."""
    groups = chords(onsets, pitches)
    return (np.array([g[0] for g in groups]), np.array([int(g[2].max()) for g in groups]),
            np.array([g[1] for g in groups]))


def scale_runs(onsets, pitches, rng):
    """The tune with scale runs between its notes, through the window's own scale; a small
    step becomes a run over an octave now and then, as in a virtuoso passage."""
    t, p, d = top_line(onsets, pitches)
    pcs = np.array(sorted(set(int(x) % 12 for x in pitches)))
    out_t, out_p = [], []
    for i in range(len(t)):
        out_t.append(t[i])
        out_p.append(int(p[i]))
        if i + 1 == len(t):
            break
        a, b = int(p[i]), int(p[i + 1])
        if abs(b - a) < 3 and rng.random() < 0.3:
            b = b + 12 * (1 if rng.random() < 0.5 else -1)
        if abs(b - a) < 3:
            continue
        lo, hi = sorted((a, b))
        inner = [x for x in range(lo + 1, hi) if x % 12 in pcs]
        if b < a:
            inner = inner[::-1]
        if not inner:
            continue
        n = min(len(inner), int(max(1, round(d[i] * 8))))  # up to 32nds
        inner = inner[-n:]  # the notes nearest the target
        step = d[i] / (len(inner) + 1)
        out_t += [t[i] + (k + 1) * step for k in range(len(inner))]
        out_p += inner
    return np.asarray(out_t), np.asarray(out_p)


def octave_doubling(onsets, pitches, rng):
    """The tune doubled at the octave (a rolled pair), with the bass of each harmony one or
    two octaves down in the left hand."""
    t, p, d = top_line(onsets, pitches)
    groups = chords(onsets, pitches)
    down = int(rng.integers(1, 3))
    above = rng.random() < 0.5
    out = []
    for (tt, pp), g in zip(zip(t, p), groups):
        out.append((tt, int(g[2].min()) - 12 * down))
        out.append((tt + 0.01, int(pp) - (0 if above else 12)))
        out.append((tt + 0.02, int(pp) + (12 if above else 0)))
    out.sort()
    return np.array([o[0] for o in out]), np.array([o[1] for o in out])


def two_hands(onsets, pitches, rng):
    """Left hand: the bass, an octave lower, on the beat, answered by an after-beat chord;
    right hand: the tune. The keys leap between the hands."""
    t, p, d = top_line(onsets, pitches)
    groups = chords(onsets, pitches)
    out = []
    for (tt, pp, dd), g in zip(zip(t, p, d), groups):
        bass = int(g[2].min()) - 12
        out.append((tt, bass))
        out.append((tt + 0.02, int(pp)))
        if dd >= 1.0 and len(g[2]) > 2:  # a stride "oom-pah": chord on the after-beat
            for k, x in enumerate(g[2][1:-1]):
                out.append((tt + dd / 2 + 0.01 * k, int(x)))
    out.sort()
    return np.array([o[0] for o in out]), np.array([o[1] for o in out])


_FUNCS = {"broken_chords": broken_chords, "scale_runs": scale_runs,
          "octave_doubling": octave_doubling, "two_hands": two_hands}


def apply(texture: str, onsets: np.ndarray, pitches: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rewrite one window into ``texture`` (onsets in quarters, pitches), sorted by onset."""
    if texture == "as_written":
        return onsets, pitches
    t, p = _FUNCS[texture](np.asarray(onsets, np.float64), np.asarray(pitches), rng)
    if len(t) < 2:
        return onsets, pitches
    order = np.argsort(t, kind="stable")
    return t[order].astype(np.float32), p[order].astype(np.int16)


def draw(kind: str, rng: np.random.Generator) -> str:
    """A texture for one window of music of this kind."""
    mix = np.asarray(TEXTURE_MIX.get(kind, TEXTURE_MIX["vocal"]))
    return TEXTURES[int(rng.choice(len(TEXTURES), p=mix / mix.sum()))]
