"""Tracebacks with a bound: a fault that repeats at every edge logs once, then a count."""

from __future__ import annotations

import logging

from piano_buddy.errorlog import MAX_KINDS, ErrorLog
from piano_buddy.events import InputEvent, Kind

from rig import Rig


def test_a_repeating_error_logs_its_traceback_once_then_every_thousandth(caplog):
    log = ErrorLog(logging.getLogger("test.errorlog"), "carrying on")
    for _ in range(2500):
        try:
            raise ValueError("the same fault")
        except ValueError as exc:
            log.record("somewhere", exc)
    records = [r for r in caplog.records if r.name == "test.errorlog"]
    assert len(records) == 3 and "Traceback" in records[0].getMessage()
    assert "repeated 2000 times" in records[-1].getMessage()
    assert log.count == 2500


def test_memory_stays_bounded_with_endless_kinds_of_error(caplog):
    log = ErrorLog(logging.getLogger("test.errorlog"), "carrying on")
    for i in range(5 * MAX_KINDS):
        log.record("somewhere", RuntimeError(f"fault {i}"))
    assert len(log._seen) <= MAX_KINDS + 1


def test_a_failing_event_in_the_conductor_is_logged_with_a_bound(caplog):
    """Defect: each failing event logged a full traceback, without a limit."""
    rig = Rig()
    try:
        def broken(*a, **k):
            raise RuntimeError("decoder broke")
        rig.genie.press = broken
        caplog.set_level(logging.ERROR)
        for i in range(300):
            rig.conductor.post(InputEvent(Kind.PRESS, i % 8, rig.now()))
            rig.conductor.post(InputEvent(Kind.RELEASE, i % 8, rig.now()))
            rig.step()
        tracebacks = [r for r in caplog.records if "Traceback" in r.getMessage()]
        assert len(tracebacks) == 1
        assert rig.conductor.stats["errors"] == 300
        assert rig.player_notes == set()
    finally:
        rig.close()


def test_a_failing_output_does_not_stop_the_others():
    from piano_buddy.outputs import Outputs

    class Broken:
        def note_on(self, *a):
            raise OSError("MIDI port gone")
        note_off = all_notes_off = note_on

    class Keeps:
        def __init__(self):
            self.got = []

        def note_on(self, *a):
            self.got.append(("on",) + a)

        def note_off(self, *a):
            self.got.append(("off",) + a)

        def all_notes_off(self):
            self.got.append(("all",))
    keeps = Keeps()
    out = Outputs(live=[Broken(), keeps])
    out.note_on(60, 90, False)
    out.note_off(60, False)
    out.all_notes_off()
    assert keeps.got == [("on", 60, 90, False), ("off", 60, False), ("all",)]
    assert out.errors.count == 3
