"""Counts a curator can read: visitors, presses, AI replies, interrupts, session time, faults.

A museum wants to know whether the box is played, how long a visit lasts and whether it
fails. The counts are kept across restarts in ``counts.json`` in ``stats.folder`` (default:
``stats`` inside the recordings folder, on the writable data partition) and written beside it as ``piano_buddy.prom`` in Prometheus' text
format, for node_exporter's textfile collector: the exporter is its own service reading that
folder, so the box's unit keeps ``PrivateNetwork``. ``piano-buddy stats`` prints them.

Both files are written whole (temporary file, fsync, rename) when a session ends and at
shutdown: a power cut leaves the last complete counts and loses at most the visit in
progress, and the SD card sees a write per visitor, not one per press. A file that cannot
be read is set aside (``counts.json.unreadable``) with one warning naming it, and counting
starts again from zero; a folder that cannot be written costs one warning, the counts go on
in memory and the next session end tries again.

``VisitorCounts`` is a :class:`~piano_buddy.outputs.NoteRecord` (the player's finished notes
are the presses, a session's first and last note its length) and reads the turn loop's own
counters (replies, interrupts, recovered errors, raised faults) through ``follow``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

COUNTS_FILE = "counts.json"
PROM_FILE = "piano_buddy.prom"
FORMAT = 1

# name -> (what it means, for the .prom HELP line and `piano-buddy stats`)
COUNTERS = {
    "visitors": "sessions: play that ended by a long silence or by shutdown",
    "presses": "notes the player played (buttons and MIDI keys)",
    "replies": "AI replies started",
    "interrupts": "AI replies the player interrupted",
    "session_seconds": "seconds from a session's first note to its last, summed",
    "faults": "faults raised (audio device lost, MIDI system gone, ...)",
    "errors": "software errors the box recovered from",
    "starts": "times the box started",
}
# the turn loop's counters (Conductor.stats) each of ours follows
FOLLOWED = {"replies": ("replies",), "interrupts": ("interrupts",),
            "faults": ("faults",), "errors": ("errors", "output_errors")}


def stats_folder(cfg) -> Path:
    """``stats.folder``, or ``stats`` inside the recordings folder: on a read-only root that
    is the data partition's mount, the one place that survives a reboot."""
    if cfg.stats.folder:
        return Path(cfg.stats.folder)
    return Path(cfg.recording.folder) / "stats"


def read_counts(folder: Path) -> dict[str, float]:
    """The counts saved in ``folder``; {} when there are none. Raises ValueError (naming the
    file) when the file is there but not counts."""
    path = Path(folder) / COUNTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from exc
    try:
        data = json.loads(text)
        counts = data["counts"]
        return {k: float(counts.get(k, 0)) for k in COUNTERS}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a counts file ({exc})") from exc


def average_session(counts: dict[str, float]) -> float:
    visitors = counts.get("visitors", 0)
    return counts.get("session_seconds", 0) / visitors if visitors else 0.0


def prometheus_text(counts: dict[str, float], written_at: float) -> str:
    """The counts in Prometheus' text exposition format (counters end in ``_total``)."""
    lines = []
    for name, meaning in COUNTERS.items():
        metric = f"piano_buddy_{name}_total"
        lines += [f"# HELP {metric} {meaning}.", f"# TYPE {metric} counter",
                  f"{metric} {_number(counts.get(name, 0))}"]
    lines += ["# HELP piano_buddy_session_seconds_average Average session length.",
              "# TYPE piano_buddy_session_seconds_average gauge",
              f"piano_buddy_session_seconds_average {average_session(counts):.1f}",
              "# HELP piano_buddy_counts_written_timestamp_seconds When these counts were "
              "written (unix time; the box's clock may be wrong without network).",
              "# TYPE piano_buddy_counts_written_timestamp_seconds gauge",
              f"piano_buddy_counts_written_timestamp_seconds {written_at:.0f}"]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _write_whole(path: Path, text: str) -> None:
    """Temporary file, fsync, rename, folder fsync: the old file or the new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o644)      # node_exporter (group piano-buddy) reads it
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class VisitorCounts:
    """The curator's counts, loaded from ``folder`` and saved there at each session end."""

    def __init__(self, folder: Path, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        self._wall = wall_clock
        self.counts = dict.fromkeys(COUNTERS, 0.0)
        self._follow: Callable[[], dict] | None = None
        self._seen: dict[str, float] = {}
        self._first: float | None = None
        self._last: float | None = None
        self._session_presses = 0
        self._write_failed = False
        self.writes = 0
        try:
            self.counts.update(read_counts(self.folder))
        except ValueError as exc:
            self._set_aside(exc)
        self.counts["starts"] += 1

    def _set_aside(self, problem: ValueError) -> None:
        path = self.folder / COUNTS_FILE
        kept = path.with_name(COUNTS_FILE + ".unreadable")
        try:
            os.replace(path, kept)
            where = f"kept as {kept}"
        except OSError as exc:
            where = f"could not be moved aside ({exc})"
        log.warning("visitor counts: %s; counting again from zero (the old file %s)",
                    problem, where)

    def follow(self, turn_stats: Callable[[], dict]) -> None:
        """Read replies, interrupts, errors and faults from the turn loop's counters."""
        self._follow = turn_stats
        self._seen = self._followed_now()

    def _followed_now(self) -> dict[str, float]:
        if self._follow is None:
            return {}
        stats = self._follow()
        return {ours: float(sum(stats.get(k, 0) for k in theirs))
                for ours, theirs in FOLLOWED.items()}

    # --- NoteRecord -----------------------------------------------------------------------
    def note(self, pitch: int, velocity: int, start: float, end: float, ai: bool) -> None:
        if ai:
            return
        self.counts["presses"] += 1
        self._session_presses += 1
        self._first = start if self._first is None else min(self._first, start)
        self._last = end if self._last is None else max(self._last, end)

    def end_session(self) -> None:
        """A visitor left (a long silence, or the box stops): count them and save."""
        if self._session_presses:
            self.counts["visitors"] += 1
            self.counts["session_seconds"] += max(0.0, self._last - self._first)
        self._first = self._last = None
        self._session_presses = 0
        self.save()

    # --- files ----------------------------------------------------------------------------
    def save(self) -> bool:
        """Take the turn loop's new counts and write both files; False (one warning until a
        write works again) when the folder cannot be written."""
        now = self._followed_now()
        for name, value in now.items():
            self.counts[name] += max(0.0, value - self._seen.get(name, 0.0))
        self._seen = now
        data = {"format": FORMAT, "counts": {k: self.counts[k] for k in COUNTERS}}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_whole(self.folder / COUNTS_FILE, json.dumps(data, indent=1) + "\n")
            _write_whole(self.folder / PROM_FILE, prometheus_text(self.counts, self._wall()))
        except OSError as exc:
            if not self._write_failed:
                log.warning("visitor counts not saved in %s (%s); counting on in memory, "
                            "retrying at the next session end", self.folder, exc)
            self._write_failed = True
            return False
        if self._write_failed:
            log.info("visitor counts saved again in %s", self.folder)
        self._write_failed = False
        self.writes += 1
        return True


def format_counts(counts: dict[str, float], folder: Path) -> str:
    """`piano-buddy stats`: what a curator reads."""
    if not counts:
        return f"no counts in {folder} yet (they are written when a visitor's session ends)"
    rows = [("visitors", "visitors (sessions)"), ("presses", "presses"),
            ("replies", "AI replies"), ("interrupts", "interrupted replies"),
            ("faults", "faults"), ("errors", "recovered errors"), ("starts", "box starts")]
    lines = [f"Piano Buddy counts ({folder})"]
    lines += [f"  {label:<22}{_number(counts.get(key, 0))}" for key, label in rows]
    lines.append(f"  {'average session':<22}{average_session(counts):.0f} s")
    return "\n".join(lines)
