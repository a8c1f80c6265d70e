"""Shared fixtures: real audio devices for tests (alsa-lib through pyalsaaudio, JACK dummy).

Import nothing from here; pytest hands the fixtures to any test that names them. The
machinery lives in tests/audio_rig.py (a plain module, also used by the benchmarks).

    def test_plays_a(alsa_capture):
        run_firmware(device=alsa_capture.device)        # in-process: env already set
        assert abs(cents(dominant_frequency(alsa_capture.samples()[:, 0], 48000), 440)) < 5

    def test_paced(jack_server):
        subprocess.run([...], env=jack_server.env())     # or in-process: env already set
        jack_server.stop(); ...; jack_server.start()     # the device vanishes and returns
"""

from __future__ import annotations


import pytest

try:    # `python -m pytest` from the repository root (the Makefile's way)
    from tests.audio_rig import (AlsaCapture, JackServer, jack_missing_reason,
                                 make_alsa_capture)
except ImportError:     # plain `pytest`: pytest put tests/ itself on sys.path
    from audio_rig import AlsaCapture, JackServer, jack_missing_reason, make_alsa_capture


@pytest.fixture
def fake_midi_ports(monkeypatch):
    """The MIDI seam's in-process ports (PIANO_BUDDY_MIDI=fake), emptied before and after."""
    from piano_buddy import midi_fake
    monkeypatch.setenv("PIANO_BUDDY_MIDI", "fake")
    midi_fake.reset()
    yield midi_fake
    midi_fake.reset()


@pytest.fixture(autouse=True)
def collector_as_python_leaves_it():
    """A Box started in this process freezes the garbage collector's objects and raises its
    gen-2 threshold (app.settle_memory); a test that does not close its box must not leave
    that to the next test (the synth's allocation test counts uncollected garbage)."""
    import gc
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


@pytest.fixture
def alsa_capture(tmp_path, monkeypatch) -> AlsaCapture:
    """ALSA "default" (and "pb_capture") write raw S16_LE stereo to a temp file.

    Sets ALSA_CONFIG_PATH for this process (alsa-lib re-reads it at every open, and each
    fixture writes a config file of its own, so one pytest process can use many). For a
    subprocess pass ``env=alsa_capture.env()``. Attributes: ``device``, ``path`` (the raw
    file), ``config``; ``samples()`` returns int16 (frames, 2) of everything captured, complete
    once the writer has closed the device. The null device behind it does not pace (writes
    return at once). ``unplug()`` / ``plug_in()`` make the next open fail / work again, for
    "device missing at start and appears later".
    """
    capture = make_alsa_capture(tmp_path / "alsa")
    monkeypatch.setenv("ALSA_CONFIG_PATH", capture.config_path)
    return capture


def _jack_or_skip() -> None:
    reason = jack_missing_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def jack_server_factory(tmp_path, monkeypatch):
    """Make JACK dummy servers: ``jack_server_factory(capture=None, period=128, start=True)``.

    Each server gets a unique name; the newest one's variables (ALSA_CONFIG_PATH to an ALSA
    config "default" -> plug -> jack -> system:playback_1/2, JACK_DEFAULT_SERVER,
    JACK_NO_START_SERVER=1) are set in this process. ``capture=path`` also records the
    samples byte for byte in that raw file. Every server is killed by PID at teardown.
    Skips when jackd or the ALSA jack plugin is missing.
    """
    _jack_or_skip()
    servers: list[JackServer] = []

    def make(*, capture=None, period: int = 128, rate: int = 48000,
             start: bool = True) -> JackServer:
        server = JackServer(rate=rate, period=period, capture=capture,
                            workdir=tmp_path / f"jack{len(servers)}")
        servers.append(server)
        for key, value in server.env_vars().items():
            monkeypatch.setenv(key, value)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def jack_server(jack_server_factory) -> JackServer:
    """A running ``jackd --no-realtime -d dummy -r 48000 -p 128``; ALSA "default" plays into it
    at real time (2 s of audio take 2 s; a writer that stalls for 0.3 s gets an underrun).

    In-process the environment is already set; a subprocess takes ``env=jack_server.env()``.
    ``stop()`` ends the server (the device vanishes: writes stop being accepted), ``start()``
    brings it back under the same name; ``pid``, ``is_running()``, ``ports()``, ``log_path``.
    Killed by PID at teardown. Skips with the reason when jackd or the plugin is missing.
    """
    return jack_server_factory()
