"""Opening hours and the volume cap of a museum box (the config's ``[museum]`` section).

The box keeps no schedule of its own: systemd timers start it before opening and stop it at
closing (``piano-buddy-open.timer``, ``piano-buddy-close.timer``). This module only answers
what the box needs at the moment it starts:

* :func:`phase`: closed, early (before opening: staff setting up) or open, from the clock and
  the hours. The unit's ``ExecCondition`` (``piano-buddy hours --condition``) keeps a box that
  is switched on at night silent until the timer starts it.
* :func:`audio_limits`: the ceiling and start volume the synth is built with (a lower ceiling
  in the early phase; the timer restarts the box at opening, which then takes the full one),
  and the knob's cap, which holds at all hours.
* :func:`timer_units`: the two timers, written from the config by the systemd generator
  (``systemd/piano-buddy-hours-generator``) at boot and at each ``systemctl daemon-reload``,
  so the config stays the one place the hours are written.

Why a restart and not a live change: the ceiling is the limiter's hard guarantee, fixed when
the synth is built; a restart at opening time, with nobody playing yet, costs a few seconds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Config, MuseumConfig

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_DAY_PART = "|".join(DAY_NAMES)
_DAYS = re.compile(rf"^({_DAY_PART})(\.\.({_DAY_PART}))?(,({_DAY_PART})(\.\.({_DAY_PART}))?)*$")

OPEN_TIMER, CLOSE_TIMER = "piano-buddy-open.timer", "piano-buddy-close.timer"
OPEN_SERVICE, CLOSE_SERVICE = "piano-buddy-open.service", "piano-buddy-close.service"

ALWAYS, CLOSED, EARLY, OPEN = "always", "closed", "early", "open"


def parse_time(key: str, text: str) -> int:
    """'09:30' -> minutes after midnight; ConfigError naming ``key`` otherwise."""
    m = _TIME.match(text)
    if not m:
        raise ConfigError(f"{key} = {text!r}: expected a time as HH:MM, 24-hour "
                          "(e.g. \"09:30\" or \"17:00\")")
    return int(m.group(1)) * 60 + int(m.group(2))


def parse_days(key: str, text: str) -> frozenset[int]:
    """'Tue..Sat,Sun' (systemd's weekday syntax) -> weekday numbers, Monday 0."""
    compact = text.replace(" ", "")
    if not _DAYS.match(compact):
        raise ConfigError(f"{key} = {text!r}: expected weekdays as systemd writes them, "
                          f"from {', '.join(DAY_NAMES)}, e.g. \"Mon..Fri\" or \"Tue..Sat,Sun\"")
    days: set[int] = set()
    for part in compact.split(","):
        first, _, last = part.partition("..")
        a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        if b < a:
            raise ConfigError(f"{key} = {text!r}: {part} runs backwards; write "
                              f"{first}..Sun,Mon..{last} for a week that wraps")
        days.update(range(a, b + 1))
    return frozenset(days)


@dataclass(frozen=True)
class Hours:
    """The opening hours in minutes after midnight, checked."""
    opens: int
    closes: int
    early: int            # the box starts at opens - early
    days: frozenset[int]
    days_text: str

    @property
    def starts(self) -> int:
        return self.opens - self.early


def hours(m: "MuseumConfig") -> Hours | None:
    """The checked hours, or None when the museum sets none (the box plays whenever it is
    on). Every cross-key rule of ``[museum]`` lives here; config.py calls it at load."""
    if not m.opens and not m.closes:
        if m.early_minutes:
            raise ConfigError(f"museum.early_minutes = {m.early_minutes}: needs museum.opens "
                              "and museum.closes (no opening hours are set)")
        return None
    if not m.opens or not m.closes:
        missing = "museum.opens" if not m.opens else "museum.closes"
        raise ConfigError(f"{missing} is empty: set both museum.opens and museum.closes, "
                          "or neither (no opening hours)")
    opens = parse_time("museum.opens", m.opens)
    closes = parse_time("museum.closes", m.closes)
    if closes <= opens:
        raise ConfigError(f"museum.closes = {m.closes!r} is not after museum.opens = "
                          f"{m.opens!r}: the box opens and closes on the same day")
    if m.early_minutes > opens:
        raise ConfigError(f"museum.early_minutes = {m.early_minutes}: the box would start "
                          f"before midnight (museum.opens = {m.opens!r})")
    return Hours(opens, closes, m.early_minutes, parse_days("museum.days", m.days),
                 m.days.replace(" ", ""))


def local_now() -> datetime:
    """The box's wall clock, local time (the one the timers use)."""
    return datetime.now()


def phase(m: "MuseumConfig", now: datetime | None = None) -> str:
    """ALWAYS (no hours), CLOSED, EARLY (the early minutes before opening) or OPEN."""
    h = hours(m)
    if h is None:
        return ALWAYS
    now = now or local_now()
    minute = now.hour * 60 + now.minute
    if now.weekday() not in h.days or not h.starts <= minute < h.closes:
        return CLOSED
    return EARLY if minute < h.opens else OPEN


@dataclass(frozen=True)
class AudioLimits:
    phase: str
    ceiling_dbfs: float     # what the synth's limiter is built with
    volume: float           # the start volume, never above max_volume
    max_volume: float       # the knob's cap, at all hours


def audio_limits(cfg: "Config", now: datetime | None = None) -> AudioLimits:
    """The ceiling, start volume and knob cap for a box started ``now``."""
    a, m = cfg.audio, cfg.museum
    p = phase(m, now)
    ceiling = min(a.ceiling_dbfs, m.early_ceiling_dbfs) if p == EARLY else a.ceiling_dbfs
    return AudioLimits(p, ceiling, min(a.volume, m.max_volume), m.max_volume)


def describe(cfg: "Config", now: datetime | None = None) -> str:
    """One line for the start-up block and ``piano-buddy hours``."""
    m, h = cfg.museum, hours(cfg.museum)
    lim = audio_limits(cfg, now)
    cap = f"volume cap {lim.max_volume:g}, ceiling {lim.ceiling_dbfs:g} dBFS"
    if h is None:
        return f"no opening hours (plays whenever it is on); {cap}"
    early = (f", starts {_hhmm(h.starts)} at {min(cfg.audio.ceiling_dbfs, m.early_ceiling_dbfs):g}"
             f" dBFS" if h.early else "")
    return f"open {h.days_text} {m.opens}-{m.closes}{early}; now {lim.phase}; {cap}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def timer_units(cfg: "Config", source: str = "/etc/piano-buddy/config.toml") -> dict[str, str]:
    """File name -> text of the two timers for these hours ({} when there are none).

    The open timer fires at the early start (if any) and at opening: each time it restarts
    the box, which then reads its phase (early: the lower ceiling; open: the full one)."""
    h = hours(cfg.museum)
    if h is None:
        return {}
    head = (f"# Written by piano-buddy-hours-generator from [museum] in {source};\n"
            "# edit the config and run `systemctl daemon-reload`, never this file.\n")
    times = ([h.starts] if h.early else []) + [h.opens]
    on_calendar = "".join(f"OnCalendar={h.days_text} *-*-* {_hhmm(t)}:00\n" for t in times)
    what = (f"{_hhmm(h.starts)} with the early ceiling, and again at opening {_hhmm(h.opens)}"
            if h.early else f"at opening {_hhmm(h.opens)}")
    open_timer = (head + "[Unit]\n"
                  f"Description=Piano Buddy: start the box {what}\n"
                  "Documentation=file:/opt/piano-buddy/README.md\n\n"
                  "[Timer]\n" + on_calendar
                  + "AccuracySec=1s\n"
                  f"Unit={OPEN_SERVICE}\n")
    close_timer = (head + "[Unit]\n"
                   f"Description=Piano Buddy: stop the box at closing {_hhmm(h.closes)}\n"
                   "Documentation=file:/opt/piano-buddy/README.md\n\n"
                   "[Timer]\n"
                   f"OnCalendar={h.days_text} *-*-* {_hhmm(h.closes)}:00\n"
                   "AccuracySec=1s\n"
                   f"Unit={CLOSE_SERVICE}\n")
    return {OPEN_TIMER: open_timer, CLOSE_TIMER: close_timer}


def generate(cfg: "Config", unit_dir: Path, source: str = "/etc/piano-buddy/config.toml"
             ) -> list[str]:
    """What a systemd generator does: write the timers into ``unit_dir`` (its first argument,
    /run/systemd/generator) and pull them in through timers.target.wants. Returns the names."""
    units = timer_units(cfg, source)
    if not units:
        return []
    wants = unit_dir / "timers.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (unit_dir / name).write_text(text)
        link = wants / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(f"../{name}")
    return sorted(units)


IGNORE_ENV = "PIANO_BUDDY_HOURS"     # =ignore: start at any hour (a runtime drop-in, see README)


def condition(cfg: "Config", now: datetime | None = None,
              env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """The unit's ExecCondition: (0, why) to start, (1, why) to stay off (systemd then skips
    the start without calling it a failure, and Restart= does not retry it).
    ``PIANO_BUDDY_HOURS=ignore`` in the unit's environment starts it at any hour: the fleet's
    health check and a technician at night set it in a drop-in under /run (gone at reboot)."""
    env = os.environ if env is None else env
    if env.get(IGNORE_ENV, "") == "ignore":
        return 0, f"starting: {IGNORE_ENV}=ignore (opening hours not applied); {describe(cfg, now)}"
    p = phase(cfg.museum, now)
    if p == CLOSED:
        return 1, (f"the museum is closed now ({describe(cfg, now)}); the box stays off until "
                   f"{OPEN_TIMER} starts it. `piano-buddy selftest` works at any hour.")
    return 0, f"starting: {describe(cfg, now)}"
