"""Opening hours and the volume cap ([museum]): the config's checks, the phase of the day, the
cap and the early ceiling through the real box on mock pins, and the timers and units that do
the timing, checked by systemd's own tools."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from piano_buddy import cli, museum
from piano_buddy.app import Box
from piano_buddy.audio_out import MemorySink
from piano_buddy.config import Config, from_dict
from piano_buddy.errors import ConfigError
from piano_buddy.panel import mock_factory

from rig import quiet_config, wait_for
from test_systemd import analyze, needs_analyze, unit_root, unit_settings

REPO = Path(__file__).resolve().parents[1]
SYSTEMD = REPO / "systemd"
GENERATOR = SYSTEMD / "piano-buddy-hours-generator"
CW = [(0, 1), (0, 0), (1, 0), (1, 1)]      # (A, B) levels for one clockwise click
CCW = [(1, 0), (0, 0), (0, 1), (1, 1)]

HOURS = {"opens": "10:00", "closes": "18:00", "days": "Tue..Sun", "early_minutes": 30,
         "early_ceiling_dbfs": -20.0, "max_volume": 0.5}
TUESDAY = datetime(2026, 12, 1)            # a Tuesday
assert TUESDAY.weekday() == 1


def at(day: datetime, hhmm: str) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return day.replace(hour=h, minute=m)


def museum_cfg(**museum_keys) -> Config:
    return from_dict({"museum": {**HOURS, **museum_keys}})


# --- the config --------------------------------------------------------------------------------

def test_defaults_set_no_hours_and_no_cap():
    cfg = Config()
    assert museum.hours(cfg.museum) is None
    assert museum.phase(cfg.museum, at(TUESDAY, "03:00")) == museum.ALWAYS
    lim = museum.audio_limits(cfg, at(TUESDAY, "03:00"))
    assert (lim.ceiling_dbfs, lim.volume, lim.max_volume) == (
        cfg.audio.ceiling_dbfs, cfg.audio.volume, 1.0)
    assert museum.timer_units(cfg) == {}


@pytest.mark.parametrize("keys, message", [
    ({"opens": "9:30"}, "museum.opens = '9:30': expected a time as HH:MM"),
    ({"opens": "24:00"}, "museum.opens = '24:00': expected a time as HH:MM"),
    ({"closes": "18.00"}, "museum.closes = '18.00': expected a time as HH:MM"),
    ({"closes": "09:00"}, "museum.closes = '09:00' is not after museum.opens = '10:00'"),
    ({"closes": ""}, "museum.closes is empty: set both museum.opens and museum.closes"),
    ({"opens": ""}, "museum.opens is empty"),
    ({"days": "Mon..Fry"}, "museum.days = 'Mon..Fry': expected weekdays as systemd writes them"),
    ({"days": "monday"}, "museum.days = 'monday'"),
    ({"days": "Sat..Tue"}, "museum.days = 'Sat..Tue': Sat..Tue runs backwards"),
    ({"early_minutes": 300}, "museum.early_minutes = 300: allowed range is 0 to 240"),
    ({"opens": "01:00", "early_minutes": 90}, "museum.early_minutes = 90: the box would start "
                                              "before midnight"),
    ({"max_volume": 1.5}, "museum.max_volume = 1.5: allowed range is 0.0 to 1.0"),
    ({"early_ceiling_dbfs": -50}, "museum.early_ceiling_dbfs = -50.0: allowed range"),
    ({"opens": 10}, "museum.opens = 10: expected a string in quotes"),
    ({"open": "10:00"}, "unknown key museum.open: [museum] allows"),
])
def test_a_bad_museum_value_is_named(keys, message):
    with pytest.raises(ConfigError) as exc:
        museum_cfg(**keys)
    assert message in str(exc.value)


def test_early_minutes_without_hours_is_an_error():
    with pytest.raises(ConfigError, match=r"museum.early_minutes = 15: needs museum.opens"):
        from_dict({"museum": {"early_minutes": 15}})


def test_a_cap_alone_needs_no_hours():
    cfg = from_dict({"museum": {"max_volume": 0.3}})
    lim = museum.audio_limits(cfg, at(TUESDAY, "03:00"))
    assert lim.phase == museum.ALWAYS and lim.volume == 0.3 and lim.max_volume == 0.3


def test_days_take_systemds_weekday_syntax():
    assert museum.parse_days("d", "Mon..Fri,Sun") == {0, 1, 2, 3, 4, 6}
    assert museum.parse_days("d", "Sat, Sun") == {5, 6}
    assert museum.parse_days("d", "Mon..Sun") == set(range(7))


# --- the phase of the day ----------------------------------------------------------------------

@pytest.mark.parametrize("day, hhmm, expected", [
    (TUESDAY, "03:00", museum.CLOSED),
    (TUESDAY, "09:29", museum.CLOSED),
    (TUESDAY, "09:30", museum.EARLY),
    (TUESDAY, "09:59", museum.EARLY),
    (TUESDAY, "10:00", museum.OPEN),
    (TUESDAY, "17:59", museum.OPEN),
    (TUESDAY, "18:00", museum.CLOSED),
    (TUESDAY.replace(day=7), "12:00", museum.CLOSED),     # a Monday: not an opening day
    (TUESDAY.replace(day=6), "12:00", museum.OPEN),       # Sunday
])
def test_phase(day, hhmm, expected):
    assert museum.phase(museum_cfg().museum, at(day, hhmm)) == expected


def test_the_early_phase_lowers_the_ceiling_and_the_cap_holds_at_all_hours():
    cfg = museum_cfg()
    early = museum.audio_limits(cfg, at(TUESDAY, "09:45"))
    assert early.phase == museum.EARLY and early.ceiling_dbfs == -20.0
    opened = museum.audio_limits(cfg, at(TUESDAY, "10:01"))
    assert opened.ceiling_dbfs == cfg.audio.ceiling_dbfs == -6.0
    for lim in (early, opened):
        assert lim.volume == 0.5 and lim.max_volume == 0.5      # audio.volume 0.8, capped
    # an early ceiling above the normal one never raises it
    loud = museum_cfg(early_ceiling_dbfs=-1.0)
    assert museum.audio_limits(loud, at(TUESDAY, "09:45")).ceiling_dbfs == -6.0


# --- through the real box ----------------------------------------------------------------------

def _turn(factory, cfg, clicks: int, clockwise: bool) -> None:
    a, b = (factory.pin(g) for g in cfg.panel.volume_encoder)
    for _ in range(clicks):
        for la, lb in (CW if clockwise else CCW):
            (a.drive_high if la else a.drive_low)()
            (b.drive_high if lb else b.drive_low)()


def _box_cfg(**museum_keys) -> Config:
    base = quiet_config()
    return dataclasses.replace(base, museum=museum_cfg(**museum_keys).museum)


def _start_box(cfg, monkeypatch, when: datetime):
    monkeypatch.setattr(museum, "local_now", lambda: when)
    factory = mock_factory()
    sink = MemorySink(cfg.audio.sample_rate, 2, realtime=True)
    box = Box(cfg, pin_factory=factory, open_sink=lambda: sink, seed=5)
    box.start()
    return box, factory, sink


def test_before_opening_the_box_plays_under_the_early_ceiling_and_the_knob_stops_at_the_cap(
        monkeypatch):
    cfg = _box_cfg()
    box, factory, sink = _start_box(cfg, monkeypatch, at(TUESDAY, "09:45"))
    try:
        assert "museum:   open Tue..Sun 10:00-18:00" in str(box.report)
        assert "now early" in str(box.report)
        assert "ceiling -20.0 dBFS" in str(box.report)
        out = box.synth.output
        assert 20 * np.log10(out.ceiling) == pytest.approx(-20.0)
        assert out.target_gain == 0.5, "audio.volume 0.8 starts at the cap"

        _turn(factory, cfg, 30, clockwise=True)          # far past the cap
        assert wait_for(lambda: box.panel.encoder.steps == 0, 2.0)   # 0.5 on the knob's scale
        assert out.target_gain == 0.5
        _turn(factory, cfg, 4, clockwise=False)          # back down answers at once
        assert wait_for(lambda: out.target_gain == pytest.approx(0.4), 2.0)
        _turn(factory, cfg, 10, clockwise=True)
        assert wait_for(lambda: out.target_gain == 0.5, 2.0)

        # Everything at once, as loud as the buttons go: the output stays under the ceiling.
        pins = [factory.pin(p) for p in cfg.panel.buttons]
        start = len(sink.samples())
        for pin in pins:
            pin.drive_low()
            time.sleep(0.02)
        time.sleep(0.5)
        for pin in pins:
            pin.drive_high()
        time.sleep(0.2)
    finally:
        box.close()
    played = sink.samples()[start:].astype(np.int32)
    peak = int(np.abs(played).max())
    assert peak > 500, "the chord was not heard"
    assert peak <= 32767 * 10 ** (-20 / 20), f"peak {peak} above the early ceiling"


def test_after_opening_the_box_takes_the_full_ceiling_with_the_cap_kept(monkeypatch):
    cfg = _box_cfg()
    box, factory, _sink = _start_box(cfg, monkeypatch, at(TUESDAY, "10:00"))
    try:
        assert "now open" in str(box.report)
        assert 20 * np.log10(box.synth.output.ceiling) == pytest.approx(-6.0, abs=0.01)
        _turn(factory, cfg, 30, clockwise=True)
        time.sleep(0.2)
        assert box.synth.output.target_gain == 0.5
    finally:
        box.close()


# --- the command the units run -----------------------------------------------------------------

def _write(tmp_path, text: str) -> Path:
    conf = tmp_path / "config.toml"
    conf.write_text(text)
    return conf


MUSEUM_TOML = """[museum]
opens = "10:00"
closes = "18:00"
days = "Tue..Sun"
early_minutes = 30
"""


@pytest.mark.parametrize("hhmm, code", [("03:00", 1), ("09:30", 0), ("12:00", 0), ("18:00", 1)])
def test_hours_condition_exit_codes(tmp_path, monkeypatch, capsys, hhmm, code):
    monkeypatch.setattr(museum, "local_now", lambda: at(TUESDAY, hhmm))
    monkeypatch.delenv("PIANO_BUDDY_HOURS", raising=False)
    conf = _write(tmp_path, MUSEUM_TOML)
    assert cli.main(["--config", str(conf), "hours", "--condition"]) == code
    err = capsys.readouterr().err
    assert ("museum is closed" in err) == (code == 1), err


def test_hours_condition_can_be_told_to_ignore_the_hours(monkeypatch):
    cfg = museum_cfg()
    night = at(TUESDAY, "03:00")
    assert museum.condition(cfg, night, env={})[0] == 1
    code, why = museum.condition(cfg, night, env={"PIANO_BUDDY_HOURS": "ignore"})
    assert code == 0 and "opening hours not applied" in why
    assert museum.condition(cfg, night, env={"PIANO_BUDDY_HOURS": "yes"})[0] == 1


def test_hours_condition_never_hides_a_bad_config(tmp_path, capsys):
    conf = _write(tmp_path, '[museum]\nopens = "25:00"\ncloses = "18:00"\n')
    assert cli.main(["--config", str(conf), "hours", "--condition"]) == 0
    assert "museum.opens = '25:00'" in capsys.readouterr().err
    assert cli.main(["--config", str(conf), "hours"]) == cli.EXIT_CONFIG


def test_check_shows_the_hours_and_the_cap(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(museum, "local_now", lambda: at(TUESDAY, "09:40"))
    conf = _write(tmp_path, MUSEUM_TOML + "max_volume = 0.6\n")
    assert cli.main(["--config", str(conf), "check"]) == 0
    out = capsys.readouterr().out
    assert ("[ok] museum: open Tue..Sun 10:00-18:00, starts 09:30 at -20 dBFS; now early; "
            "volume cap 0.6, ceiling -20 dBFS") in out


def test_hours_generate_writes_the_timers_and_links_them(tmp_path):
    conf = _write(tmp_path, MUSEUM_TOML)
    out = tmp_path / "generator"
    out.mkdir()
    assert cli.main(["--config", str(conf), "hours", "--generate", str(out)]) == 0
    for name in (museum.OPEN_TIMER, museum.CLOSE_TIMER):
        assert (out / name).is_file()
        link = out / "timers.target.wants" / name
        assert os.readlink(link) == f"../{name}" and link.resolve() == (out / name).resolve()
    s = unit_settings((out / museum.OPEN_TIMER).read_text())
    assert s["OnCalendar"] == ["Tue..Sun *-*-* 09:30:00", "Tue..Sun *-*-* 10:00:00"]
    assert s["Unit"] == [museum.OPEN_SERVICE]
    c = unit_settings((out / museum.CLOSE_TIMER).read_text())
    assert c["OnCalendar"] == ["Tue..Sun *-*-* 18:00:00"] and c["Unit"] == [museum.CLOSE_SERVICE]
    # Again (every daemon-reload): same files, no error on the existing links.
    assert cli.main(["--config", str(conf), "hours", "--generate", str(out)]) == 0


def test_hours_generate_without_hours_writes_nothing(tmp_path):
    conf = _write(tmp_path, "[museum]\nmax_volume = 0.7\n")
    out = tmp_path / "generator"
    out.mkdir()
    assert cli.main(["--config", str(conf), "hours", "--generate", str(out)]) == 0
    assert list(out.iterdir()) == []


def test_the_generator_script_runs_the_firmware(tmp_path):
    """The shell generator as systemd runs it (argument: the output folder), pointed at this
    checkout's firmware through its two test variables."""
    exe = tmp_path / "piano-buddy"
    exe.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m piano_buddy \"$@\"\n")
    exe.chmod(0o755)
    conf = _write(tmp_path, MUSEUM_TOML)
    out = tmp_path / "normal"
    out.mkdir()
    env = dict(os.environ, PIANO_BUDDY_EXE=str(exe), PIANO_BUDDY_CONFIG=str(conf),
               PYTHONPATH=os.pathsep.join([str(REPO / "firmware"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([str(GENERATOR), str(out), str(tmp_path / "early"), str(tmp_path / "late")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [museum.CLOSE_TIMER, museum.OPEN_TIMER, "timers.target.wants"])
    # Not installed (no firmware there): the generator is silent and writes nothing.
    other = tmp_path / "other"
    other.mkdir()
    env["PIANO_BUDDY_EXE"] = str(tmp_path / "absent")
    r = subprocess.run([str(GENERATOR), str(other)], env=env, capture_output=True, text=True)
    assert (r.returncode, r.stderr, list(other.iterdir())) == (0, "", [])


def test_the_exec_condition_is_the_hours_check_on_the_same_config():
    s = unit_settings((SYSTEMD / "piano-buddy.service").read_text())
    (condition,) = s["ExecCondition"]
    (start,) = s["ExecStart"]
    argv = shlex.split(condition)
    assert argv[0] == shlex.split(start)[0]
    args = cli._parser().parse_args(argv[1:])
    assert args.command == "hours" and args.condition
    run_argv = [a for a in shlex.split(start) if not a.startswith("$")]
    assert args.config == cli._parser().parse_args(run_argv[1:]).config


# --- the units, by systemd's own tools ---------------------------------------------------------

def hours_root(tmp_path: Path) -> Path:
    """unit_root plus the open/close services, the timers the generator writes, and a
    stand-in /usr/bin/systemctl for the services' ExecStart."""
    root = unit_root(tmp_path, (SYSTEMD / "piano-buddy.service").read_text())
    for name in ("piano-buddy-open.service", "piano-buddy-close.service"):
        shutil.copy(SYSTEMD / name, root / "etc/systemd/system" / name)
    units = museum.timer_units(museum_cfg())
    for name, text in units.items():
        (root / "etc/systemd/system" / name).write_text(text)
    ctl = root / "usr/bin/systemctl"
    ctl.parent.mkdir(parents=True, exist_ok=True)
    ctl.write_text("#!/bin/sh\nexit 0\n")
    ctl.chmod(0o755)
    return root


@needs_analyze
def test_the_hours_units_verify_and_print_nothing(tmp_path):
    root = hours_root(tmp_path)
    names = ["piano-buddy-open.timer", "piano-buddy-close.timer", "piano-buddy-open.service",
             "piano-buddy-close.service", "piano-buddy.service"]
    r = analyze("verify", f"--root={root}", *names)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", f"systemd-analyze verify warned:\n{r.stderr}"


@needs_analyze
def test_verify_of_the_timers_does_catch_a_bad_calendar(tmp_path):
    root = hours_root(tmp_path)
    timer = root / "etc/systemd/system/piano-buddy-close.timer"
    timer.write_text(timer.read_text().replace("Tue..Sun *-*-* 18:00:00", "Tue..Sun 25:00"))
    r = analyze("verify", f"--root={root}", "piano-buddy-close.timer")
    assert "Failed to parse calendar specification" in r.stderr, r.stderr


@needs_analyze
def test_the_timers_fire_at_the_configured_times():
    """systemd's calendar parser agrees with our phases: the next elapses from a Monday
    evening are Tuesday's early start, Tuesday's opening, then Wednesday's early start."""
    units = museum.timer_units(museum_cfg())
    open_cal = unit_settings(units[museum.OPEN_TIMER])["OnCalendar"]
    base = "2026-11-30 20:00:00"       # Monday evening, closed
    seen = []
    for cal in open_cal:
        r = analyze("calendar", "--iterations=2", f"--base-time={base}", cal)
        assert r.returncode == 0, r.stderr
        seen += [line.split(":", 1)[1].strip() for line in r.stdout.splitlines()
                 if "Next elapse" in line or "Iter. #2" in line]
    stamps = sorted(datetime.strptime(" ".join(s.split()[1:3]), "%Y-%m-%d %H:%M:%S")
                    for s in seen)
    assert [s.strftime("%a %H:%M") for s in stamps] == ["Tue 09:30", "Tue 10:00", "Wed 09:30",
                                                        "Wed 10:00"]
    cfg = museum_cfg()
    assert [museum.phase(cfg.museum, s) for s in stamps] == [museum.EARLY, museum.OPEN] * 2


def test_the_open_service_restarts_and_the_close_service_stops_the_box():
    o = unit_settings((SYSTEMD / "piano-buddy-open.service").read_text())
    c = unit_settings((SYSTEMD / "piano-buddy-close.service").read_text())
    assert o["Type"] == c["Type"] == ["oneshot"]
    assert o["ExecStart"] == ["/usr/bin/systemctl restart piano-buddy.service"]
    assert c["ExecStart"] == ["/usr/bin/systemctl stop piano-buddy.service"]


def test_the_generator_passes_shellcheck():
    r = subprocess.run(["sh", "-n", str(GENERATOR)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    r = subprocess.run(["shellcheck", "-S", "warning", str(GENERATOR)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout
