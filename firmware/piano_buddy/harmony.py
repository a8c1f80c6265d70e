"""The AI harmonizing while the child plays: a bass note and a chord under the melody.

A key-aware harmonizer of rules, chosen over a trained model because its guarantees can be
stated and measured (``make eval``'s harmony table, on licence-clean Bach chorale melodies):
the key is the Krumhansl-Kessler profile that best fits the pitch classes played so far
(durations as weights, the older notes fading); the chords are the key's diatonic triads (the
harmonic minor's major V); at a melody note that comes at least a beat after the last change,
the chord is the one that holds the note and best follows the last chord (a table of common
progressions), with parallel fifths and octaves between bass and melody counted against it.
The bass takes the root nearest the last bass note, the chord three tones in close position
under the melody; both sound quieter than the melody (``harmony.level``).

``Harmonizer.melody_note`` is called as each melody note starts and answers at once (the
accompaniment starts in the same audio block as the note that causes it); ``harmonize``
plans a whole known line (the AI's reply) beat by beat the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)        # natural minor plus the leading tone
# (degree, root above the tonic, chord intervals above the root)
MAJOR_CHORDS = (("I", 0, (0, 4, 7)), ("ii", 2, (0, 3, 7)), ("iii", 4, (0, 3, 7)),
                ("IV", 5, (0, 4, 7)), ("V", 7, (0, 4, 7)), ("vi", 9, (0, 3, 7)))
MINOR_CHORDS = (("i", 0, (0, 3, 7)), ("III", 3, (0, 4, 7)), ("iv", 5, (0, 3, 7)),
                ("V", 7, (0, 4, 7)), ("VI", 8, (0, 4, 7)), ("VII", 10, (0, 4, 7)))
# How well one chord follows another (common-practice habits; unlisted pairs score 0).
PROGRESSIONS = {
    "I": {"IV": 2, "V": 2, "vi": 1.5, "ii": 1.5, "iii": 0.5},
    "ii": {"V": 3, "IV": 0.5, "vi": 0.5},
    "iii": {"vi": 2, "IV": 1.5},
    "IV": {"V": 2.5, "I": 2, "ii": 1},
    "V": {"I": 3, "vi": 2, "IV": 0.5},
    "vi": {"ii": 2, "IV": 2, "V": 1},
    "i": {"iv": 2, "V": 2, "VI": 1.5, "III": 1, "VII": 1},
    "III": {"VI": 2, "iv": 1.5, "VII": 1},
    "iv": {"V": 2.5, "i": 2, "VII": 1},
    "VI": {"iv": 2, "V": 1.5, "III": 1, "VII": 1},
    "VII": {"III": 2.5, "i": 1.5},
}
TONIC_BONUS = 1.0          # the tonic chord when nothing came before
STAY_SCORE = 1.0           # keeping the chord (a held harmony is often right)
PARALLEL_PENALTY = 4.0     # parallel fifths or octaves between bass and melody
BASS_RANGE = (36, 52)      # C2..E3; lower (down to C1) only under a melody that low
LOWEST_BASS = 24
KEY_MEMORY = 0.95          # each new note's weight against what came before (key fading)
KEY_SWITCH_MARGIN = 0.15   # a new key must fit this much better (correlation) to take over
MIN_KEY_WEIGHT = 1.0       # beats of evidence before the key estimate is trusted


@dataclass(frozen=True)
class Key:
    tonic: int             # pitch class 0..11
    minor: bool

    @property
    def scale(self) -> frozenset[int]:
        return frozenset((self.tonic + s) % 12
                         for s in (MINOR_SCALE if self.minor else MAJOR_SCALE))

    @property
    def chords(self):
        return MINOR_CHORDS if self.minor else MAJOR_CHORDS

    def __str__(self) -> str:
        names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
        return f"{names[self.tonic]} {'minor' if self.minor else 'major'}"


def _profiles():
    """The 24 keys and their profiles, centred and scaled: a correlation is one dot product."""
    import numpy as np
    keys, rows = [], []
    for minor, profile in ((False, MAJOR_PROFILE), (True, MINOR_PROFILE)):
        for tonic in range(12):
            p = np.roll(np.asarray(profile, dtype=float), tonic)
            keys.append(Key(tonic, minor))
            rows.append((p - p.mean()) / np.linalg.norm(p - p.mean()))
    return keys, np.array(rows)


_KEYS, _PROFILE_ROWS = None, None


def key_fits(weights: Sequence[float]) -> dict[Key, float]:
    """How well each of the 24 keys' profiles correlates with the pitch-class weights."""
    import numpy as np
    global _KEYS, _PROFILE_ROWS
    if _KEYS is None:
        _KEYS, _PROFILE_ROWS = _profiles()
    w = np.asarray(weights, dtype=float) - np.mean(weights)
    norm = float(np.linalg.norm(w))
    if norm == 0:
        return {Key(0, False): 0.0}
    return dict(zip(_KEYS, (_PROFILE_ROWS @ (w / norm)).tolist()))


def estimate_key(weights: Sequence[float], current: Key | None = None) -> Key:
    """The best-fitting key; ``current`` stays unless another fits clearly better."""
    fits = key_fits(weights)
    best = max(fits, key=fits.get)
    if current is not None and fits.get(current, -2.0) + KEY_SWITCH_MARGIN >= fits[best]:
        return current
    return best


@dataclass(frozen=True)
class Chord:
    degree: str
    root: int              # pitch class
    tones: frozenset[int]  # pitch classes


def chords_of(key: Key) -> list[Chord]:
    return [Chord(d, (key.tonic + r) % 12, frozenset((key.tonic + r + i) % 12 for i in iv))
            for d, r, iv in key.chords]


def _motion(a: int, b: int) -> int:
    return (b > a) - (b < a)


def parallel(prev: tuple[int, int] | None, bass: int, melody: int) -> bool:
    """Bass and melody a fifth or octave (compound too) apart twice, moving the same way."""
    if prev is None:
        return False
    pb, pm = prev
    if pb == bass and pm == melody:
        return False
    perfect = lambda lo, hi: (hi - lo) % 12 in (0, 7)      # noqa: E731
    return (perfect(pb, pm) and perfect(bass, melody) and (pm - pb) % 12 == (melody - bass) % 12
            and _motion(pb, bass) == _motion(pm, melody) != 0)


@dataclass
class Accompaniment:
    """What sounds under the melody now: the bass and the chord's three notes."""
    chord: Chord
    bass: int
    upper: tuple[int, ...]

    @property
    def pitches(self) -> tuple[int, ...]:
        return (self.bass, *self.upper)


@dataclass
class Harmonizer:
    """Chooses the accompaniment note by note (``melody_note``); one per phrase."""
    beat: float = 0.5                           # seconds: the chord changes at most this often
    weights: list[float] = field(default_factory=lambda: [0.0] * 12)
    key: Key | None = None
    now: Accompaniment | None = None
    changed_at: float = float("-inf")
    last_pair: tuple[int, int] | None = None    # (bass, melody) at the last melody note
    _evidence: float = 0.0

    def reset(self) -> None:
        self.weights = [0.0] * 12
        self.key, self.now = None, None
        self.changed_at, self.last_pair, self._evidence = float("-inf"), None, 0.0

    def hear(self, pitch: int, seconds: float = 0.5) -> None:
        """A melody note's weight for the key (call it for every note, also the child's)."""
        self.weights = [w * KEY_MEMORY for w in self.weights]
        self.weights[pitch % 12] += max(0.1, seconds)
        self._evidence += max(0.1, seconds)

    def current_key(self, first_pitch: int) -> Key:
        if self._evidence < MIN_KEY_WEIGHT:        # too little heard: the first note's major
            return self.key or Key(first_pitch % 12, False)
        return estimate_key(self.weights, self.key)

    def melody_note(self, pitch: int, t: float) -> Accompaniment | None:
        """A melody note starts at ``t``: the new accompaniment, or None to keep the old."""
        self.hear(pitch, self.beat)
        if self.now is not None and t - self.changed_at < self.beat - 1e-6:
            self._check_parallel(pitch)
            return None
        key = self.current_key(pitch)
        chord = self._choose(key, pitch)
        if self.now is not None and chord == self.now.chord and key == self.key:
            self.changed_at = t
            self.last_pair = (self.now.bass, pitch)
            return None
        self.key = key
        self.now = self._voice(chord, pitch)
        self.changed_at = t
        self.last_pair = (self.now.bass, pitch)
        return self.now

    def _check_parallel(self, pitch: int) -> None:
        if self.now is not None:
            self.last_pair = (self.now.bass, pitch)

    def _choose(self, key: Key, pitch: int) -> Chord:
        candidates = [c for c in chords_of(key) if pitch % 12 in c.tones]
        if not candidates:                           # a note outside the key: keep or tonic
            return self.now.chord if self.now is not None else chords_of(key)[0]
        prev = self.now.chord if self.now is not None else None

        def score(c: Chord) -> float:
            s = (TONIC_BONUS if c.degree.upper() == "I" else 0.0) if prev is None else \
                (STAY_SCORE if c == prev else PROGRESSIONS.get(prev.degree, {}).get(c.degree, 0))
            if parallel(self.last_pair, self._bass_for(c, pitch), pitch):
                s -= PARALLEL_PENALTY
            return s
        return max(candidates, key=lambda c: (score(c), -candidates.index(c)))

    def _bass_for(self, chord: Chord, melody: int) -> int:
        """The root in the bass range nearest the last bass, always under the melody."""
        under = [p for p in range(LOWEST_BASS, BASS_RANGE[1] + 1)
                 if p % 12 == chord.root and p <= melody - 3]
        options = [p for p in under if p >= BASS_RANGE[0]] or under[-1:] or [LOWEST_BASS]
        if self.now is None:
            return options[len(options) // 2]
        return min(options, key=lambda p: (abs(p - self.now.bass), p))

    def _voice(self, chord: Chord, melody: int) -> Accompaniment:
        """The bass, and up to three chord tones in close position between it and the
        melody (fewer where the melody is low)."""
        bass = self._bass_for(chord, melody)
        upper: list[int] = []
        p = melody - 3
        while len(upper) < 3 and p > bass:
            if p % 12 in chord.tones:
                upper.append(p)
            p -= 1
        return Accompaniment(chord, bass, tuple(sorted(upper)))


def harmonize(notes: Sequence[tuple[int, float, float]], beat: float,
              harmonizer: Harmonizer | None = None) -> list[tuple[float, Accompaniment]]:
    """A known line [(pitch, start, end)] -> [(start, accompaniment)] at each change."""
    h = harmonizer or Harmonizer(beat=beat)
    for pitch, start, end in notes:                  # the whole line is known: hear it all
        h.hear(pitch, end - start)
    out = []
    for pitch, start, _end in sorted(notes, key=lambda n: n[1]):
        acc = h.melody_note(pitch, start)
        if acc is not None:
            out.append((start, acc))
    return out


ACCOMPANIMENT_TAG = 2        # the synth tag of the live accompaniment
REPLY_ACCOMPANIMENT_TAG = 3  # the reply's (its own tag: a chord tone may equal a reply note)
INNER_SOFTER = 6             # the chord tones a little under the bass (velocity)


class Accompanist:
    """Plays what the harmonizer chooses on the synth: live under the player (one chord at
    a time, ``ACCOMPANIMENT_TAG``), and scheduled under a planned reply
    (``REPLY_ACCOMPANIMENT_TAG``, cancelled with the reply). ``level`` is the loudness
    against the melody's velocity."""

    def __init__(self, synth, level: float, beat: float, sample_rate: int) -> None:
        self.synth, self.level, self.sample_rate = synth, float(level), sample_rate
        self.harmonizer = Harmonizer(beat=beat)
        self.sounding: tuple[int, ...] = ()

    def _velocities(self, acc: Accompaniment, velocity: int) -> list[tuple[int, int]]:
        level = round(velocity * self.level)
        return [(p, max(1, level - (0 if p == acc.bass else INNER_SOFTER))) for p in acc.pitches]

    def melody_note(self, pitch: int, velocity: int, t: float) -> None:
        """A melody note starts now: a new chord, in the same audio block, if one is due."""
        acc = self.harmonizer.melody_note(pitch, t)
        if acc is None:
            return
        self.stop()
        for p, v in self._velocities(acc, velocity):
            self.synth.note_on(p, v, ACCOMPANIMENT_TAG)
        self.sounding = acc.pitches

    def stop(self) -> None:
        """The live chord ends (the phrase ended, the box went quiet)."""
        for p in self.sounding:
            self.synth.note_off(p, ACCOMPANIMENT_TAG)
        self.sounding = ()

    def reset(self) -> None:
        """A new visitor or a switch: silence, and the key forgotten."""
        self.stop()
        self.harmonizer.reset()

    def under_reply(self, notes, qpm: float, velocity: int, frame0: int, start: float) -> None:
        """Plan ``notes`` (Note: pitch, start, end in conductor seconds; the reply starts at
        ``start``, synth frame ``frame0``) beat by beat, from the key heard so far, and
        schedule each chord until the next one."""
        live = self.harmonizer
        h = Harmonizer(beat=60.0 / qpm, weights=list(live.weights), _evidence=live._evidence)
        plan = harmonize([(n.pitch, n.start, n.end) for n in notes], 60.0 / qpm, h)
        end = max(n.end for n in notes)
        frame = lambda t: frame0 + round((t - start) * self.sample_rate)   # noqa: E731
        for i, (at, acc) in enumerate(plan):
            until = plan[i + 1][0] if i + 1 < len(plan) else end
            for p, v in self._velocities(acc, velocity):
                self.synth.note_on(p, v, REPLY_ACCOMPANIMENT_TAG, at_frame=frame(at))
                self.synth.note_off(p, REPLY_ACCOMPANIMENT_TAG, at_frame=frame(until))
        live.beat = 60.0 / qpm                   # the player's tempo, for what follows
