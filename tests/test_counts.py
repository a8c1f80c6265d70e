"""Visitor counts (issue 13, "counts a curator can read"): kept across restarts, written as a
Prometheus textfile, read by `piano-buddy stats`; bad files and unwritable folders named."""

from __future__ import annotations

import dataclasses
import json
import logging
import re

from piano_buddy import midi_fake
from piano_buddy.app import Box
from piano_buddy.cli import main as cli_main
from piano_buddy.conductor import Turn
from piano_buddy.counts import (COUNTERS, COUNTS_FILE, PROM_FILE, VisitorCounts, read_counts,
                                stats_folder)
from piano_buddy.config import Config, from_dict
from piano_buddy.panel import mock_factory

try:
    from tests.rig import Rig, quiet_config, wait_for
except ImportError:
    from rig import Rig, quiet_config, wait_for

# One sample line of the text exposition format: name, optional labels, a number.
PROM_SAMPLE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.]+(e[+-]?[0-9]+)?$")


def play(counts: VisitorCounts, *notes: tuple[float, float], ai: bool = False) -> None:
    for start, end in notes:
        counts.note(60, 90, start, end, ai)


def test_a_session_counts_a_visitor_its_presses_and_its_length(tmp_path):
    counts = VisitorCounts(tmp_path)
    play(counts, (10.0, 10.5), (11.0, 11.5), (14.0, 16.0))
    play(counts, (17.0, 18.0), ai=True)            # the AI's notes are not presses
    counts.end_session()
    counts.end_session()                           # a silence with nobody: no visitor
    saved = read_counts(tmp_path)
    assert saved["visitors"] == 1 and saved["presses"] == 3
    assert saved["session_seconds"] == 6.0 and saved["starts"] == 1


def test_counts_survive_a_restart_and_follow_the_turn_loop(tmp_path):
    stats = {"replies": 0, "interrupts": 0, "errors": 0, "output_errors": 0, "faults": 0}
    first = VisitorCounts(tmp_path)
    first.follow(lambda: stats)
    play(first, (0.0, 1.0))
    stats.update(replies=2, interrupts=1, faults=1)
    first.end_session()
    # a new process: the turn loop's counters start at zero again
    stats = dict.fromkeys(stats, 0)
    second = VisitorCounts(tmp_path)
    second.follow(lambda: stats)
    play(second, (5.0, 8.0))
    stats.update(replies=1, errors=1, output_errors=1)   # they move during the session
    second.end_session()
    saved = read_counts(tmp_path)
    assert saved["visitors"] == 2 and saved["presses"] == 2 and saved["starts"] == 2
    assert saved["replies"] == 3 and saved["interrupts"] == 1
    assert saved["faults"] == 1 and saved["errors"] == 2
    assert saved["session_seconds"] == 4.0


def test_the_prometheus_file_is_text_format_with_every_counter(tmp_path):
    counts = VisitorCounts(tmp_path, wall_clock=lambda: 1_700_000_000.0)
    play(counts, (0.0, 3.0))
    counts.end_session()
    text = (tmp_path / PROM_FILE).read_text()
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) piano_buddy_\w+ ", line), line
            continue
        assert PROM_SAMPLE.match(line), line
        name, value = line.split(" ")
        samples[name] = float(value)
    for name in COUNTERS:
        assert f"# TYPE piano_buddy_{name}_total counter" in text
    assert samples["piano_buddy_visitors_total"] == 1
    assert samples["piano_buddy_session_seconds_average"] == 3.0
    assert samples["piano_buddy_counts_written_timestamp_seconds"] == 1_700_000_000
    assert (tmp_path / PROM_FILE).stat().st_mode & 0o044 == 0o044   # node_exporter reads it
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left"


def test_an_unreadable_counts_file_is_named_set_aside_and_counting_restarts(tmp_path, caplog):
    (tmp_path / COUNTS_FILE).write_text('{"format": 1, "counts": [1, 2')
    with caplog.at_level(logging.WARNING, logger="piano_buddy.counts"):
        counts = VisitorCounts(tmp_path)
    assert any(COUNTS_FILE in r.getMessage() and "from zero" in r.getMessage()
               for r in caplog.records)
    assert (tmp_path / (COUNTS_FILE + ".unreadable")).read_text().startswith('{"format"')
    play(counts, (0.0, 1.0))
    counts.end_session()
    assert read_counts(tmp_path)["visitors"] == 1


def test_a_folder_that_cannot_be_written_warns_once_and_counts_on(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    counts = VisitorCounts(blocker / "stats")
    with caplog.at_level(logging.WARNING, logger="piano_buddy.counts"):
        for _ in range(3):
            play(counts, (0.0, 1.0))
            counts.end_session()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not saved" in warnings[0] and "stats" in warnings[0]
    assert counts.counts["visitors"] == 3
    blocker.unlink()                                  # the disk is back
    play(counts, (0.0, 1.0))
    counts.end_session()
    assert read_counts(blocker / "stats")["visitors"] == 4


def test_the_default_folder_is_on_the_data_partition_with_the_recordings():
    cfg = Config()
    assert stats_folder(cfg) == stats_folder(cfg).parent / "stats"
    assert str(stats_folder(cfg)).startswith(cfg.recording.folder)
    assert str(stats_folder(from_dict({"stats": {"folder": "/srv/c"}}))) == "/srv/c"


def test_the_conductor_feeds_the_counts_visitor_reply_interrupt_and_idle_end(tmp_path):
    """Simulated time through the real conductor and models: a phrase, the AI's reply, a
    press that interrupts it, then a silence that ends the session."""
    rig = Rig(seed=3, session_idle=5.0)
    counts = VisitorCounts(tmp_path)
    rig.conductor.outputs.records.append(counts)
    counts.follow(lambda: rig.conductor.stats)
    for b in (0, 2, 4, 5):
        rig.tap(b)
    rig.run_until(lambda: rig.conductor.turn is Turn.AI)
    rig.run(0.3)
    rig.tap(1)                                       # interrupts the reply (and is answered)
    rig.run_until(lambda: counts.writes == 1, limit=40)   # session_idle: the visitor left
    saved = read_counts(tmp_path)
    rig.close()
    assert saved["visitors"] == 1 and saved["presses"] == 5
    assert saved["replies"] == rig.conductor.stats["replies"] >= 2
    assert saved["interrupts"] == 1
    assert 0.5 < saved["session_seconds"] < 15.0


def test_the_box_counts_and_stats_prints_them(tmp_path, capsys, fake_midi_ports):
    """The real box (mock pins, a fake MIDI keyboard): a visit, a shutdown, a restart, and
    `piano-buddy stats` reading the file the box wrote."""
    cfg = quiet_config()
    cfg = dataclasses.replace(cfg, midi=dataclasses.replace(cfg.midi, enabled=True),
                              stats=dataclasses.replace(cfg.stats, enabled=True,
                                                        folder=str(tmp_path)))
    kb = midi_fake.keyboard("USB Piano")
    for start in (1, 2):
        box = Box(cfg, pin_factory=mock_factory(), seed=4)
        try:
            box.start()
            assert f"counts:   {tmp_path}" in str(box.report)
            box.midi_in.scan()
            for pitch in (60, 62, 64):
                kb.send([0x90, pitch, 90])
                kb.send([0x80, pitch, 0])
            assert wait_for(lambda: box.conductor.turn is Turn.AI, 20)
        finally:
            box.close()
        saved = read_counts(tmp_path)
        assert saved["starts"] == start and saved["visitors"] == start
        assert saved["presses"] == 3 * start and saved["replies"] >= start
    assert cli_main(["stats", "--folder", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"visitors \(sessions\)\s+2\b", out) and re.search(r"presses\s+6\b", out)
    assert "average session" in out
    json.loads((tmp_path / COUNTS_FILE).read_text())


def test_stats_names_a_bad_file_and_says_when_there_are_no_counts(tmp_path, capsys):
    assert cli_main(["stats", "--folder", str(tmp_path)]) == 0
    assert "no counts" in capsys.readouterr().out
    (tmp_path / COUNTS_FILE).write_text("garbage")
    assert cli_main(["stats", "--folder", str(tmp_path)]) == 1
    assert COUNTS_FILE in capsys.readouterr().err
