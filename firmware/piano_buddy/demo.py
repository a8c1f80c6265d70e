"""The built-in demo: a scripted player presses the mock buttons, the AI answers.

It runs the real firmware parts (mock pins through gpiozero's callback path, the Genie and
melody models, the conductor, the synth) on a clock driven by the audio frames, so it
renders faster than real time and the same seed gives the same duet. It writes
``duet.wav``, ``duet.mid`` and ``duet.png`` (a piano roll: player and AI in two colours),
and plays the WAV through ALSA when there is a device. ``--harmony`` plays the same duet with
the AI accompanying (harmony.py) into ``duet-harmony.*``, the accompaniment in a third colour.
``--style NAME`` answers in one melody style (styles.py) into ``duet-NAME.*``; ``--styles``
plays the same player's duet once per style.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .config import Config

log = logging.getLogger(__name__)

MAX_SECONDS = 60.0


class Press(NamedTuple):
    time: float       # seconds from the start
    button: int
    hold: float       # seconds held


def human_script(seed: int = 7) -> tuple[list[Press], list[Press]]:
    """Two phrases with a person's timing: an eighth-note pulse at ~100 qpm, slightly
    uneven, some notes held longer, a rest inside the second phrase. Times are relative to
    each phrase's start; the second phrase comes in while the AI is still answering."""
    rng = np.random.default_rng(seed)
    eighth = 60 / 100 / 2
    phrase1 = [(0, 0, 1), (1, 2, 1), (2, 4, 1), (3, 5, 1), (4, 7, 2), (6, 5, 1),
               (7, 4, 1), (8, 3, 2), (10, 1, 1), (11, 2, 3)]
    phrase2 = [(0, 3, 1), (1, 3, 1), (2, 4, 1), (3, 6, 2), (7, 5, 1), (8, 4, 1),
               (9, 2, 1), (10, 0, 4)]
    return tuple([Press(max(0.0, at * eighth + rng.normal(0, 0.012)), button,
                        length * eighth * rng.uniform(0.75, 0.9))
                  for at, button, length in phrase] for phrase in (phrase1, phrase2))


class NoteLog:
    """Collects finished notes the way the session recorder does (same interface)."""

    def __init__(self):
        self.notes: list[tuple[int, int, float, float, bool]] = []

    def note(self, pitch, velocity, start, end, ai):
        self.notes.append((pitch, velocity, start, end, ai))

    def tick(self, now):
        pass

    def end_session(self):
        pass

    def close(self):
        pass


HARMONY = "harmony"      # the "who" of an accompaniment note in the piano roll


class AccompanimentLog:
    """The synth as the conductor sees it, noting the accompaniment's notes (their synth
    tags) for the piano roll; everything else passes straight through. A reply's notes are
    scheduled on and off at once, so a cancel (an interrupt) shortens what it cut;
    :meth:`finish` hands the notes to the note log."""

    def __init__(self, synth, sample_rate: int) -> None:
        from .harmony import ACCOMPANIMENT_TAG, REPLY_ACCOMPANIMENT_TAG
        self._synth, self._sr = synth, sample_rate
        self._tags = (ACCOMPANIMENT_TAG, REPLY_ACCOMPANIMENT_TAG)
        self._open: dict[tuple[int, int], list[tuple[float, int]]] = {}
        self._notes: list[list] = []            # [pitch, velocity, start, end, tag]

    def __getattr__(self, name):
        return getattr(self._synth, name)

    def _time(self, at_frame) -> float:
        return (self._synth.frame if at_frame is None else at_frame) / self._sr

    def note_on(self, pitch, velocity, tag=0, at_frame=None, stamp=None):
        if tag in self._tags:
            self._open.setdefault((pitch, tag), []).append((self._time(at_frame), velocity))
        return self._synth.note_on(pitch, velocity, tag, at_frame=at_frame, stamp=stamp)

    def note_off(self, pitch, tag=0, at_frame=None):
        if tag in self._tags and self._open.get((pitch, tag)):
            start, velocity = self._open[(pitch, tag)].pop(0)
            self._notes.append([pitch, velocity, start, self._time(at_frame), tag])
        return self._synth.note_off(pitch, tag, at_frame=at_frame)

    def cancel(self, tag):
        if tag in self._tags:
            cut = self._time(None)
            for n in self._notes:
                if n[4] == tag and n[3] > cut:
                    n[3] = max(n[2], cut)
        return self._synth.cancel(tag)

    def finish(self, log: "NoteLog") -> None:
        log.notes += [(p, v, s, e, HARMONY) for p, v, s, e, _t in self._notes if e > s]


def render_duet(cfg: Config, seed: int = 7):
    """Run the scripted duet offline. Returns (int16 samples, NoteLog, conductor stats);
    the stats also hold ``interrupt_times``, the seconds at which the player pressed a
    button while the AI was playing (for the picture)."""
    from . import assembly
    from .conductor import Conductor, Turn
    from .outputs import Outputs
    from .panel import mock_factory

    sr, block = cfg.audio.sample_rate, cfg.audio.period_frames
    synth = assembly.build_synth(cfg)
    clock = lambda: synth.frame / sr   # noqa: E731 - the audio frames are the demo's clock
    factory = mock_factory(clock)
    notes = NoteLog()
    models = assembly.load_models(cfg, np.random.default_rng(seed))
    conductor: Conductor | None = None
    panel = assembly.build_panel(cfg, lambda ev: conductor.post(ev), pin_factory=factory,
                                 clock=clock)
    heard = AccompanimentLog(synth, sr) if cfg.harmony.enabled else synth
    conductor = assembly.build_conductor(cfg, heard, models, panel,
                                         outputs=Outputs(records=[notes]), clock=clock)
    first, second = human_script(seed)
    edges = _edges(first, 0.5)
    second_started = False
    out = np.zeros((int(MAX_SECONDS * sr) + block, 2), dtype=np.int16)
    pins = [factory.pin(p) for p in cfg.panel.buttons]
    interrupt_times: list[float] = []
    try:
        while synth.frame + block <= len(out):
            now = clock()
            while edges and edges[0][0] <= now:
                _, button, down = edges.pop(0)
                if down and conductor.turn is Turn.AI:
                    interrupt_times.append(now)
                pins[button].drive_low() if down else pins[button].drive_high()
            conductor.drain(now)
            if (not second_started and not edges and conductor.stats["replies"] == 1
                    and conductor.turn is Turn.AI):
                # the player comes back in while the AI is still answering: an interrupt
                reply_end = conductor.reply.end if conductor.reply else now
                edges = _edges(second, now + max(0.3, reply_end - now - 0.5))
                second_started = True
            start = synth.frame
            out[start:start + block] = synth.render()
            if (second_started and not edges and conductor.turn is Turn.PLAYER
                    and not conductor.phrase and not conductor.held_pitches
                    and conductor.stats["replies"] >= 2 and synth.is_silent()):
                break
    finally:
        conductor.silence_everything()
        panel.close()
    if isinstance(heard, AccompanimentLog):
        heard.finish(notes)
    end = synth.frame + int(0.3 * sr)
    style = models.melody.style
    answered = sorted(models.melody.answer_counts) or [style]
    return (out[:min(end, len(out))], notes,
            {**conductor.stats, "interrupt_times": interrupt_times,
             "style": style if style != "auto" else f"auto: {', '.join(answered)}"})


def _edges(presses, origin):
    edges = []
    for p in presses:
        edges.append((origin + p.time, p.button, True))
        edges.append((origin + p.time + p.hold, p.button, False))
    return sorted(edges)


def write_midi(path: Path, notes, cfg: Config) -> None:
    """The duet as a type-1 .mid, encoded exactly as the session recorder does."""
    from .recorder import encode_midi

    data = encode_midi(notes, player_channel=cfg.midi.player_channel - 1,
                       ai_channel=cfg.midi.ai_channel - 1)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_piano_roll(path: Path, notes, title: str = "Piano Buddy duet",
                     interrupts=()) -> bool:
    """A PNG piano roll (:func:`piano_roll_figure`). False if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no piano roll")
        return False
    fig = piano_roll_figure(notes, title, interrupts)
    fig.savefig(path)
    plt.close(fig)
    return True


def piano_roll_figure(notes, title: str = "Piano Buddy duet", interrupts=()):
    """Player in blue and AI in orange, note names on the pitch axis, the grid behind the
    bars, a dashed line where the player interrupted the AI."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from .terminal import note_name

    colours = {False: "#2b6cb0", True: "#dd6b20", HARMONY: "#38a169"}
    fig, ax = plt.subplots(figsize=(11, 4.6), dpi=110)
    ax.set_axisbelow(True)                  # the grid behind the bars
    for pitch, _vel, start, end, ai in notes:
        ax.broken_barh([(start, max(0.02, end - start))], (pitch - 0.4, 0.8),
                       facecolors=colours[ai], edgecolors="black", linewidth=0.3, zorder=2)
    if notes:
        lo = min(n[0] for n in notes) - 2
        hi = max(n[0] for n in notes) + 2
        ax.set_ylim(lo - 0.5, hi + 0.5)
        ax.set_xlim(0, max(n[3] for n in notes) + 0.3)
        # every white key named; the Cs (and the grid line on them) stand out
        whites = [p for p in range(lo, hi + 1) if p % 12 in (0, 2, 4, 5, 7, 9, 11)]
        ax.set_yticks(whites, [note_name(p) for p in whites], fontsize=7)
        ax.set_yticks(range(lo, hi + 1), minor=True)
        ax.grid(axis="y", which="minor", color="#f2f2f2", linewidth=0.6)
        ax.grid(axis="y", which="major", color="#dddddd", linewidth=0.8)
        for p in range(lo, hi + 1):
            if p % 12 == 0:
                ax.axhline(p, color="#bbbbbb", linewidth=0.9, zorder=1)
    ax.grid(axis="x", color="#eeeeee", linewidth=0.6)
    handles = [Patch(color=colours[False], label="player (8 buttons via Genie)"),
               Patch(color=colours[True], label="AI reply (melody LSTM)")]
    if any(n[4] == HARMONY for n in notes):
        handles.append(Patch(color=colours[HARMONY], label="AI accompaniment (harmony)"))
    for t in interrupts:
        ax.axvline(t, color="#c53030", linestyle="--", linewidth=1.2, zorder=3)
        ax.annotate("player interrupts:\nthe AI stops", (t, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(4, -4), textcoords="offset points", va="top", fontsize=8,
                    color="#c53030")
    if interrupts:
        handles.append(Line2D([], [], color="#c53030", linestyle="--", label="interrupt"))
    ax.set_xlabel("seconds")
    ax.set_ylabel("note")
    ax.set_title(title)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False)
    fig.tight_layout()
    return fig


def run_demo(cfg: Config, out_dir: Path, seed: int = 7, play: bool = True,
             harmony: bool = False, style: str | None = None, every_style: bool = False
             ) -> int:
    """``piano-buddy demo``: render the duet, write the three files, play it if possible;
    with ``harmony`` the AI accompanies (``duet-harmony.*``); with ``style`` the AI answers
    in that melody style (``duet-<style>.*``); ``every_style`` plays the same player's duet
    once per style (:data:`piano_buddy.styles.STYLE_ORDER`)."""
    from .styles import STYLE_ORDER

    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(cfg, midi=dataclasses.replace(cfg.midi, enabled=False),
                              harmony=dataclasses.replace(cfg.harmony, enabled=harmony))
    styles = STYLE_ORDER if every_style else (style,)
    for s in styles:
        name = "duet" + ("-harmony" if harmony else "") + (f"-{s}" if s else "")
        run_cfg = cfg if s is None else dataclasses.replace(
            cfg, turns=dataclasses.replace(cfg.turns, style=s))
        _one_duet(run_cfg, out_dir, name, seed, play and len(styles) == 1)
    return 0


def _one_duet(cfg: Config, out_dir: Path, name: str, seed: int, play: bool) -> None:
    from .synth import write_wav

    samples, notes, stats = render_duet(cfg, seed)
    sr = cfg.audio.sample_rate
    wav, mid, png = (out_dir / f"{name}{ext}" for ext in (".wav", ".mid", ".png"))
    write_wav(wav, samples, sr)
    write_midi(mid, notes.notes, cfg)
    roll = write_piano_roll(png, notes.notes, interrupts=stats["interrupt_times"],
                            title=f"Piano Buddy duet (style {stats['style']})")
    n_player = sum(1 for n in notes.notes if not n[4])
    n_harmony = sum(1 for n in notes.notes if n[4] == HARMONY)
    n_ai = len(notes.notes) - n_player - n_harmony
    print(f"Piano Buddy demo ({name}): {n_player} player notes, {n_ai} AI notes, "
          + (f"{n_harmony} accompaniment notes, " if n_harmony else "") +
          f"{stats['replies']} replies ({stats['style']}), {stats['interrupts']} "
          f"interrupt(s), {len(samples) / sr:.1f} s of audio")
    print(f"  wrote {wav}, {mid}" + (f", {png}" if roll else " (no piano roll)"))
    if play:
        _play(cfg, samples)


def _play(cfg: Config, samples: np.ndarray) -> None:
    """Play the rendered duet on the ALSA device, if one opens; otherwise say so."""
    from .alsa_quiet import quiet_alsa_errors
    from .audio_out import AlsaSink
    from .errors import AudioDeviceError

    a = cfg.audio
    sink = AlsaSink(a.device, sample_rate=a.sample_rate, channels=2,
                    period_frames=a.period_frames, periods=a.periods)
    try:
        with quiet_alsa_errors():      # our one line below says what alsa-lib would in eight
            sink.open()
    except (AudioDeviceError, OSError) as exc:
        print(f"  no audio device ({exc}); listen to the WAV file instead")
        return
    try:
        step = a.period_frames
        for i in range(0, len(samples) - step + 1, step):
            sink.write(samples[i:i + step])
    except (AudioDeviceError, OSError) as exc:
        print(f"  audio device stopped ({exc})")
    finally:
        sink.close()
