"""Session recordings: real files, read back with mido; real full and read-only file systems
(tmpfs mounts, as root); a real SIGKILL of a writing process."""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import datetime
from pathlib import Path

import mido
import pytest

from piano_buddy.recorder import (MAX_NOTES_PER_SESSION, Recording, SessionRecorder,
                                  list_recordings, main_recordings)

TPB, BPM = 480, 120
TICK = 60.0 / (BPM * TPB)           # seconds per tick


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def duet(rng: random.Random, n: int, t0: float = 1000.0):
    """n notes alternating player phrases and AI replies, realistic timing, no overlaps of a
    pitch within a part."""
    notes, t = [], t0
    for i in range(n):
        ai = (i // 8) % 2 == 1
        length = rng.uniform(0.05, 0.6)
        notes.append((rng.randrange(21, 109), rng.randrange(1, 128), t, t + length, ai))
        t += length + rng.uniform(0.0, 0.3)
    return notes


def read_notes(path: Path):
    """(pitch, velocity, start_s, end_s, channel, track) from a .mid, pairing on/off FIFO."""
    mid = mido.MidiFile(path)
    tempo = None
    out = []
    for track in mid.tracks:
        tick, open_notes = 0, {}
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempo = msg.tempo
            if msg.type == "note_on" and msg.velocity > 0:
                open_notes.setdefault((msg.channel, msg.note), []).append((tick, msg.velocity))
            elif msg.type in ("note_off", "note_on"):
                start, velocity = open_notes[(msg.channel, msg.note)].pop(0)
                out.append((msg.note, velocity, start, tick, msg.channel, track.name))
        assert not any(open_notes.values()), f"note without its off in {path}"
    assert tempo == mido.bpm2tempo(BPM)
    seconds = [(p, v, mido.tick2second(s, mid.ticks_per_beat, tempo),
                mido.tick2second(e, mid.ticks_per_beat, tempo), ch, name)
               for p, v, s, e, ch, name in out]
    return sorted(seconds, key=lambda n: (n[2], n[0]))


def recorder(folder, **kw) -> SessionRecorder:
    kw.setdefault("clock", FakeClock())
    return SessionRecorder(folder, **kw)


# --- round trip --------------------------------------------------------------------------------
def test_recording_reads_back_as_what_was_played(tmp_path):
    rng = random.Random(7)
    notes = duet(rng, 200)
    rec = recorder(tmp_path, player_channel=2, ai_channel=9,
                   wall_clock=lambda: datetime(2026, 11, 25, 12, 0, 0).timestamp() + 5.0)
    for n in notes:
        rec.note(*n[:4], ai=n[4])
    rec.end_session()
    rec.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["session-000001-20261125-120005.mid"]   # first note, local
    mid = mido.MidiFile(files[0])
    assert mid.type == 1 and [t.name for t in mid.tracks][1:] == ["Player", "AI"]
    got = read_notes(files[0])
    t0 = notes[0][2]
    want = sorted([(p, v, s - t0, e - t0, 9 if ai else 2, "AI" if ai else "Player")
                   for p, v, s, e, ai in notes], key=lambda n: (n[2], n[0]))
    assert len(got) == len(want) == 200
    for g, w in zip(got, want):
        assert g[0:2] == w[0:2] and g[4:] == w[4:], (g, w)
        assert abs(g[2] - w[2]) <= TICK / 2 + 1e-9 and abs(g[3] - w[3]) <= TICK / 2 + 1e-9

    [r] = list_recordings(tmp_path)
    assert isinstance(r, Recording) and tuple(r)[0] == files[0]
    assert r.size == files[0].stat().st_size
    assert r.start == datetime(2026, 11, 25, 12, 0, 5)
    assert r.n_player_notes == sum(not n[4] for n in notes)
    assert r.n_ai_notes == sum(n[4] for n in notes)
    assert abs(r.duration - (max(n[3] for n in notes) - t0)) < 2 * TICK


def test_repeated_key_and_zero_length_notes_stay_paired(tmp_path):
    rec = recorder(tmp_path)
    # the same key struck again exactly when it was released, and a zero-length tap
    for n in [(60, 90, 10.0, 10.5, False), (60, 80, 10.5, 11.0, False),
              (64, 70, 10.2, 10.2, True), (200, 500, 10.3, 10.1, True)]:
        rec.note(*n[:4], ai=n[4])
    rec.close()
    [path] = tmp_path.glob("session-*.mid")
    got = [(p, v, round(s, 3), round(e, 3), ch) for p, v, s, e, ch, _ in read_notes(path)]
    assert got == [(60, 90, 0.0, 0.5, 0), (64, 70, 0.2, 0.201, 1), (127, 127, 0.3, 0.301, 1),
                   (60, 80, 0.5, 1.0, 0)]                  # zero length -> one tick


def test_each_session_gets_its_own_file_numbered_in_order(tmp_path):
    """end_session() (the conductor's idle time) ends a session; the next note starts one."""
    clock = FakeClock(0.0)
    wall = [datetime(2026, 1, 2, 3, 4, 5).timestamp()]
    rec = SessionRecorder(tmp_path, clock=clock, wall_clock=lambda: wall[0])
    rec.note(60, 90, 0.0, 1.0, ai=False)
    rec.note(62, 90, 101.0, 102.0, ai=True)
    rec.end_session()
    clock.t = 300.0
    wall[0] += 300.0
    rec.note(64, 90, 300.0, 301.0, ai=False)        # a new visitor
    rec.close()                                      # writes the second session
    names = [r.path.name for r in list_recordings(tmp_path)]
    assert names == ["session-000001-20260102-030405.mid", "session-000002-20260102-030905.mid"]
    assert [(r.n_player_notes, r.n_ai_notes) for r in list_recordings(tmp_path)] == [(1, 1),
                                                                                   (1, 0)]
    rec.end_session()                                # after close: nothing, no error
    rec.close()


def test_order_follows_the_sequence_not_the_clock(tmp_path):
    """A Pi without a real-time clock boots in 1970 (or any wrong day): the newest recording
    is still the one with the highest number, and the cap removes the oldest by number."""
    rng = random.Random(5)
    notes = duet(rng, 200)
    size = len(recorder(tmp_path / "probe").encode(notes))
    days = [datetime(2026, 6, 1, 12, 0, 0), datetime(1970, 1, 1, 0, 0, 5),
            datetime(2026, 1, 1, 9, 0, 0), datetime(1970, 1, 1, 0, 0, 9)]
    folder = tmp_path / "rec"
    for i, day in enumerate(days):                  # one recorder per boot
        rec = SessionRecorder(folder, max_bytes=int(2.5 * size), clock=FakeClock(),
                              wall_clock=lambda day=day: day.timestamp())
        for n in notes:
            rec.note(*n[:4], ai=n[4])
        rec.close()
        os.utime(rec.written[0], (0, 1e9 - i * 1e6))   # file times lie too
    kept = [r.path.name for r in list_recordings(folder)]
    assert kept == ["session-000003-20260101-090000.mid", "session-000004-19700101-000009.mid"]


def test_a_failed_write_removes_nothing(tmp_path, monkeypatch):
    """The cap makes room only after the new file is safely written."""
    rng = random.Random(6)
    notes = duet(rng, 200)
    size = len(recorder(tmp_path / "probe").encode(notes))
    folder = tmp_path / "rec"
    rec = SessionRecorder(folder, max_bytes=int(1.5 * size), clock=FakeClock())
    for n in notes:
        rec.note(*n[:4], ai=n[4])
    rec.end_session()
    rec.close()
    before = sorted(p.name for p in folder.iterdir())
    assert len(before) == 1
    real_write = os.write

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    rec = SessionRecorder(folder, max_bytes=int(1.5 * size), clock=FakeClock())
    monkeypatch.setattr(os, "write", full_disk)
    for n in notes:
        rec.note(*n[:4], ai=n[4])
    rec.close()
    monkeypatch.setattr(os, "write", real_write)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert rec.stats["skipped"] == 1 and rec.stats["removed_for_space"] == 0


def test_names_from_before_sequence_numbers_count_as_oldest(tmp_path):
    folder = tmp_path / "rec"
    rec = recorder(folder)
    rec.note(60, 90, 0.0, 1.0, ai=False)
    rec.close()
    old = folder / "session-20300101-000000.mid"       # an older firmware's name, a later date
    rec.written[0].rename(old)
    rec = recorder(folder)
    rec.note(62, 90, 0.0, 1.0, ai=False)
    rec.close()
    assert [r.path.name for r in list_recordings(folder)] == [
        old.name, rec.written[0].name]
    assert rec.written[0].name.startswith("session-000001-")


def test_empty_sessions_write_nothing_and_names_never_collide(tmp_path):
    wall = datetime(2026, 5, 6, 7, 8, 9).timestamp()
    rec = recorder(tmp_path, wall_clock=lambda: wall)
    rec.end_session()
    for i in range(3):
        rec.note(60 + i, 90, 1000.0, 1000.5, ai=False)
        rec.end_session()
    rec.close()
    assert [r.path.name for r in list_recordings(tmp_path)] == [
        "session-000001-20260506-070809.mid", "session-000002-20260506-070809.mid",
        "session-000003-20260506-070809.mid"]


def test_a_very_long_session_is_split(tmp_path):
    rec = recorder(tmp_path)
    for i in range(MAX_NOTES_PER_SESSION + 10):
        rec.note(21 + i % 88, 90, 1000.0 + i * 0.01, 1000.005 + i * 0.01, ai=bool(i % 2))
    rec.close()
    counts = [r.n_player_notes + r.n_ai_notes for r in list_recordings(tmp_path)]
    assert counts == [MAX_NOTES_PER_SESSION, 10]


# --- folder size cap ---------------------------------------------------------------------------
def test_size_cap_removes_the_oldest(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="piano_buddy.recorder")
    rng = random.Random(3)
    notes = duet(rng, 300)
    size = len(recorder(tmp_path / "probe").encode(notes))   # every session encodes the same
    wall = [datetime(2026, 3, 1, 10, 0, 0).timestamp()]
    rec = SessionRecorder(tmp_path / "rec", max_bytes=int(3.5 * size), clock=FakeClock(),
                          wall_clock=lambda: wall[0])
    for i in range(6):
        for n in notes:
            rec.note(*n[:4], ai=n[4])
        rec.end_session()
        wall[0] += 3600
    rec.close()
    kept = [r.path.name for r in list_recordings(tmp_path / "rec")]
    assert kept == [f"session-00000{i}-20260301-{h}0000.mid" for i, h in ((4, 13), (5, 14), (6, 15))]
    assert sum(r.size for r in list_recordings(tmp_path / "rec")) <= 3.5 * size
    assert rec.stats["removed_for_space"] == 3
    assert sum("Removed the oldest recording" in r.getMessage() for r in caplog.records) == 3


# --- power cut ---------------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from piano_buddy.recorder import SessionRecorder
    folder = Path(sys.argv[1])
    rec = SessionRecorder(folder, clock=lambda: 0.0)
    i = 0
    while True:                        # one big session after another until killed
        for k in range(20000):
            rec.note(21 + (k + i) % 88, 90, k * 0.01, k * 0.01 + 0.005, ai=bool(k % 3 == 0))
        rec.end_session()
        i += 1
        time.sleep(0.001)
""")


def test_power_cut_mid_write_leaves_no_broken_file(tmp_path):
    """SIGKILL a recording process the moment its temp file appears (that is: mid-write),
    several times: every session-*.mid reads back complete; the temp file left behind is
    ignored by list_recordings and removed by the next start."""
    folder = tmp_path / "rec"
    folder.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    caught_mid_write = 0
    for attempt in range(6):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(folder)], env=env)
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                temps = [n for n in os.listdir(folder) if n.endswith(".tmp")]
                if temps:
                    break
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait()
        left = [n for n in os.listdir(folder) if n.endswith(".tmp")]
        caught_mid_write += bool(left)
        for path in folder.glob("session-*.mid"):
            mid = mido.MidiFile(path)       # raises on a truncated file
            notes = sum(1 for t in mid.tracks for m in t if m.type == "note_on")
            assert notes == 20000, path
        assert all(r.n_player_notes + r.n_ai_notes == 20000 for r in list_recordings(folder))
        assert len(list_recordings(folder)) == len(list(folder.glob("session-*.mid")))
    assert caught_mid_write >= 1, "never killed mid-write: the test proved nothing"
    rec = SessionRecorder(folder)           # the next start cleans up
    rec.close()
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]
    assert rec.stats["temp_files_cleaned"] >= 1


# --- full and read-only disks (real tmpfs mounts) ----------------------------------------------
@pytest.fixture
def small_mount(tmp_path):
    """A 64 KiB tmpfs of its own (root only); yields (path, remount(options))."""
    point = tmp_path / f"mnt-{uuid.uuid4().hex[:6]}"
    point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(point)], check=True)

    try:
        yield point, remount
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def skipped_lines(caplog):
    return [r.getMessage() for r in caplog.records if "Recording skipped" in r.getMessage()]


def test_full_disk_skips_one_recording_with_one_line_and_keeps_the_old(small_mount, caplog):
    caplog.set_level(logging.INFO, logger="piano_buddy.recorder")
    folder, _ = small_mount
    rng = random.Random(11)
    wall = [datetime(2026, 4, 1, 9, 0, 0).timestamp()]
    rec = SessionRecorder(folder, clock=FakeClock(), wall_clock=lambda: wall[0])
    small = duet(rng, 100)
    for n in small:
        rec.note(*n[:4], ai=n[4])
    rec.end_session()
    rec.close()
    [old] = list_recordings(folder)
    old_bytes = old.path.read_bytes()

    rec = SessionRecorder(folder, clock=FakeClock(), wall_clock=lambda: wall[0] + 60)
    for n in duet(rng, 20000):                  # ~200 kB: does not fit in 64 kB
        rec.note(*n[:4], ai=n[4])
    rec.end_session()
    for n in small:                             # playing goes on; the next session fits
        rec.note(*n[:4], ai=n[4])
    wall[0] += 3600
    rec.close()
    lines = skipped_lines(caplog)
    assert len(lines) == 1, lines
    assert str(folder) in lines[0] and "disk is full" in lines[0] and "ENOSPC" in lines[0]
    recordings = list_recordings(folder)
    assert old.path.read_bytes() == old_bytes
    assert len(recordings) == 2 and recordings[0].path == old.path
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]
    assert rec.stats["skipped"] == 1 and rec.stats["written"] == 1


def test_read_only_disk_skips_with_one_line_then_recovers(small_mount, caplog):
    caplog.set_level(logging.INFO, logger="piano_buddy.recorder")
    folder, remount = small_mount
    rec = SessionRecorder(folder, clock=FakeClock())
    rec.note(60, 90, 1000.0, 1001.0, ai=False)
    rec.end_session()
    rec.close()
    [old] = list_recordings(folder)
    old_bytes = old.path.read_bytes()
    remount("ro")
    rec = SessionRecorder(folder, clock=FakeClock())
    rec.note(62, 90, 2000.0, 2001.0, ai=True)
    rec.end_session()
    rec.note(64, 90, 2002.0, 2003.0, ai=False)   # the recorder is not wedged: a 2nd session
    rec.close()
    lines = skipped_lines(caplog)
    assert len(lines) == 2, lines                # one line per skipped recording
    assert all(str(folder) in line and "read-only" in line and "EROFS" in line
               for line in lines)
    remount("rw")
    assert [r.path for r in list_recordings(folder)] == [old.path]
    assert old.path.read_bytes() == old_bytes
    rec = SessionRecorder(folder, clock=FakeClock())
    rec.note(65, 90, 3000.0, 3001.0, ai=False)
    rec.close()
    assert len(list_recordings(folder)) == 2


def test_folder_that_cannot_be_created_skips_with_one_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="piano_buddy.recorder")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    rec = recorder(blocker / "recordings")
    rec.note(60, 90, 1000.0, 1001.0, ai=False)
    rec.close()
    lines = skipped_lines(caplog)
    assert len(lines) == 1 and str(blocker / "recordings") in lines[0], lines
    assert "ENOTDIR" in lines[0] or "EEXIST" in lines[0]


# --- what the conductor sees ---------------------------------------------------------------
def test_conductor_calls_never_touch_the_disk(tmp_path, monkeypatch):
    """note/tick/end_session run on the caller's thread without any file system call: the
    writer thread is the only one that opens, lists or writes."""
    import threading
    caller = threading.get_ident()
    touched = []
    for name in ("open", "listdir", "stat", "mkdir", "replace", "unlink", "fsync", "write"):
        real = getattr(os, name)

        def spy(*a, _real=real, _name=name, **k):
            if threading.get_ident() == caller:
                touched.append(_name)
            return _real(*a, **k)
        monkeypatch.setattr(os, name, spy)
    rec = SessionRecorder(tmp_path, clock=FakeClock())
    for i in range(1000):
        rec.note(60, 90, 1000.0 + i, 1000.5 + i, ai=bool(i % 2))
    rec.end_session()
    rec.note(61, 90, 6000.0, 6000.5, ai=False)
    rec.end_session()
    assert touched == []
    rec.close()
    assert len(list_recordings(tmp_path)) == 2


def test_main_recordings_prints_a_table(tmp_path, capsys):
    assert main_recordings(tmp_path / "none") == 0
    assert "does not exist" in capsys.readouterr().out
    wall = datetime(2026, 11, 25, 14, 30, 0).timestamp()
    rec = recorder(tmp_path, wall_clock=lambda: wall)
    for n in [(60, 90, 1000.0, 1000.5, False), (64, 90, 1001.0, 1065.0, True)]:
        rec.note(*n[:4], ai=n[4])
    rec.close()
    (tmp_path / ".session-20261125-143001.mid.99.tmp").write_bytes(b"MThd half")
    assert main_recordings(tmp_path) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"1 recording in {tmp_path}")
    assert out[2].split() == ["2026-11-25", "14:30:00", "1:05", "1", "1",
                              out[2].split()[5], out[2].split()[6],
                              "session-000001-20261125-143000.mid"]


def test_errno_reasons_are_plain_words():
    from piano_buddy.recorder import _reason
    assert _reason(OSError(errno.ENOSPC, "No space")) == "the disk is full (ENOSPC)"
    assert _reason(OSError(errno.EROFS, "ro")) == "the file system is read-only (EROFS)"
    assert _reason(OSError(errno.EACCES, "x")) == "permission denied (EACCES)"


def test_encoding_matches_mido_and_the_midi_standard(tmp_path):
    """Our byte writer against mido's: the same messages, times and header."""
    rng = random.Random(5)
    notes = duet(rng, 500)
    notes.append((70, 64, notes[-1][3] + 3600.0, notes[-1][3] + 3601.0, True))  # long gap
    rec = recorder(tmp_path, player_channel=4, ai_channel=15, ticks_per_beat=960, tempo_bpm=90)
    data = rec.encode(notes)
    rec.close()
    path = tmp_path / "x.mid"
    path.write_bytes(data)
    mid = mido.MidiFile(path)
    assert (mid.type, mid.ticks_per_beat, len(mid.tracks)) == (1, 960, 3)
    assert mid.tracks[0][1] == mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90))
    again = tmp_path / "again.mid"
    mid.save(again)                                  # mido writes back the same bytes
    assert again.read_bytes() == data
    assert max(m.time for m in mid.tracks[2]) > 0x1FFFFF     # a 4-byte delta time
    assert abs(mid.length - (max(n[3] for n in notes) - notes[0][2])) < 1 / 1440 + 1e-9


def test_variable_length_quantities_from_the_standard():
    from piano_buddy.recorder import _varlen
    table = {0: "00", 0x40: "40", 0x7F: "7f", 0x80: "8100", 0x2000: "c000", 0x3FFF: "ff7f",
             0x4000: "818000", 0x1FFFFF: "ffff7f", 0x200000: "81808000",
             0x0FFFFFFF: "ffffff7f"}
    assert {v: _varlen(v).hex() for v in table} == table
