"""Real audio plumbing for tests and benchmarks: ALSA configs, a JACK dummy server, pitch.

A plain module (no pytest inside) so benchmarks and scripts use the same rig as the tests:

    from tests.audio_rig import JackServer
    with JackServer() as jack:                 # jackd -d dummy, paced like a sound card
        env = jack.env()                       # ALSA_CONFIG_PATH, JACK_DEFAULT_SERVER, ...
        subprocess.run([...firmware...], env=env)

How alsa-lib finds these configs (measured, alsa-lib 1.2.8): ``ALSA_CONFIG_PATH`` is read
again by every ``snd_pcm_open()``, and the configuration is reloaded when the list of files
or a file's (device, inode, mtime in whole seconds) changes. Setting a new value in
``os.environ`` inside a running process therefore works, provided each config is a distinct
file: rewriting one file within the same second is NOT noticed. Every helper here writes a
new file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SYSTEM_ALSA_CONF = "/usr/share/alsa/alsa.conf"
JACK_PLUGIN_GLOB = "libasound_module_pcm_jack.so"


def alsa_config_path(conf: Path) -> str:
    """The ALSA_CONFIG_PATH value: the system config, then ours overriding it."""
    return f"{SYSTEM_ALSA_CONF}:{conf}"


def _unique(directory: Path, stem: str, suffix: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{stem}-{uuid.uuid4().hex[:8]}{suffix}"


# --- ALSA file-plugin capture ------------------------------------------------------------------
@dataclass
class AlsaCapture:
    """An ALSA device whose samples land, byte for byte, in ``path`` (raw S16_LE interleaved).

    ``device`` ("default") and ``"pb_capture"`` both write there; the ``null`` device behind
    the file plugin does not pace, so writes return at once and never underrun. The file plugin
    writes whole periods as they complete and the rest when the device is closed: read the
    samples after the writer closed the device.

    ``unplug()`` / ``plug_in()`` replace the config file (new inode, later mtime) so that the
    next ``snd_pcm_open()`` in any thread of this process finds "default" missing (a ``hw``
    card that is not there) or back; a PCM already open is not affected.
    """
    path: Path
    config: Path
    channels: int = 2
    device: str = "default"
    plugged: bool = True

    @property
    def config_path(self) -> str:
        return alsa_config_path(self.config)

    def env(self, base: dict | None = None) -> dict:
        """Environment for a subprocess that should play into this capture."""
        env = dict(os.environ if base is None else base)
        env["ALSA_CONFIG_PATH"] = self.config_path
        return env

    def samples(self) -> np.ndarray:
        """Everything captured so far, as int16 of shape (frames, channels)."""
        if not self.path.exists():
            return np.zeros((0, self.channels), np.int16)
        raw = np.fromfile(self.path, dtype="<i2")
        frames = raw.size // self.channels
        return raw[:frames * self.channels].reshape(frames, self.channels).astype(np.int16)


    def _capture_text(self) -> str:
        return ("# written by tests/audio_rig.py: the default device captures to a raw file\n"
                'pcm.!default { type plug  slave.pcm "pb_capture" }\n'
                f'pcm.pb_capture {{ type file  slave.pcm "null"  file "{self.path}"  '
                'format "raw" }\n')

    def _write(self, text: str) -> None:
        """Atomic replace with a new inode and an mtime at least a second later, so that
        alsa-lib (which compares device, inode and whole-second mtime) reloads it."""
        old_mtime = self.config.stat().st_mtime if self.config.exists() else 0.0
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        mtime = max(time.time(), old_mtime + 1.5)
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, self.config)

    def plug_in(self) -> None:
        self._write(self._capture_text())
        self.plugged = True

    def unplug(self) -> None:
        self._write("# written by tests/audio_rig.py: 'default' is a card that is not there\n"
                    "pcm.!default { type hw  card 99  device 0 }\n"
                    'pcm.pb_capture { type hw  card 99  device 0 }\n')
        self.plugged = False


def make_alsa_capture(directory: Path, channels: int = 2, plugged: bool = True) -> AlsaCapture:
    """Write a fresh capture config (and name a fresh raw file) under ``directory``."""
    directory = Path(directory)
    capture = AlsaCapture(path=_unique(directory, "capture", ".raw"),
                          config=_unique(directory, "capture", ".conf"), channels=channels)
    if plugged:
        capture.plug_in()
    else:
        capture.unplug()
    return capture


# --- JACK dummy server ------------------------------------------------------------------------
def jack_missing_reason() -> str | None:
    """Why the JACK rig cannot run here, or None when it can."""
    for tool in ("jackd", "jack_lsp"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian package jackd2)"
    if not any(Path(d).glob(f"**/{JACK_PLUGIN_GLOB}")
               for d in ("/usr/lib", "/usr/lib64", "/usr/local/lib") if Path(d).is_dir()):
        return f"ALSA jack plugin {JACK_PLUGIN_GLOB} not found (package libasound2-plugins)"
    return None


@dataclass
class JackServer:
    """``jackd -d dummy``: a sound card's real-time pacing and underruns, without a card.

    ``start()`` returns once ``system:playback_1`` is listed; ``stop()`` ends the server (by
    PID) and returns once it is gone; both can be called again (a device that vanishes and
    returns). The ALSA config maps ``default`` (and ``pb_jack``) through ``plug`` (the jack
    plugin only takes FLOAT_LE) to system:playback_1/2. With ``capture`` set, the samples
    are also written, byte for byte, to that raw S16_LE file (a file plugin in the chain).
    """
    name: str = field(default_factory=lambda: f"pb-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    rate: int = 48000
    period: int = 128
    workdir: Path | None = None
    capture: Path | None = None
    start_timeout: float = 30.0
    # SCHED_FIFO for jackd's clock (benchmarks on a loaded machine); jackd carries on without
    # it where that is not permitted. Tests keep the default, as the notes measured.
    realtime: bool = False

    def __post_init__(self) -> None:
        self._own_workdir = self.workdir is None
        self.workdir = Path(self.workdir or tempfile.mkdtemp(prefix="pb-jack-"))
        self.config = self._write_config()
        self.log_path = self.workdir / f"jackd-{self.name}.log"
        self._proc: subprocess.Popen | None = None
        self.starts = 0

    # --- config and environment -----------------------------------------------------------
    def _write_config(self) -> Path:
        conf = _unique(self.workdir, "jack", ".conf")
        jack = ('pcm.pb_jackout { type jack  playback_ports { 0 "system:playback_1" '
                '1 "system:playback_2" } }\n')
        if self.capture is None:
            body = 'pcm.pb_jack { type plug  slave.pcm "pb_jackout" }\n'
        else:   # plug -> file -> plug -> jack; a second plug in front trips an alsa-lib assert
            body = ('pcm.pb_jackplug { type plug  slave.pcm "pb_jackout" }\n'
                    f'pcm.pb_jack {{ type file  slave.pcm "pb_jackplug"  '
                    f'file "{self.capture}"  format "raw" }}\n')
        conf.write_text("# written by tests/audio_rig.py: ALSA default -> JACK dummy server\n"
                        + jack + body + 'pcm.!default { type plug  slave.pcm "pb_jack" }\n')
        return conf

    @property
    def config_path(self) -> str:
        return alsa_config_path(self.config)

    def env_vars(self) -> dict[str, str]:
        """The variables that point alsa-lib and libjack at this server (and never start one)."""
        return {"ALSA_CONFIG_PATH": self.config_path, "JACK_DEFAULT_SERVER": self.name,
                "JACK_NO_START_SERVER": "1", "JACK_NO_AUDIO_RESERVATION": "1"}

    def env(self, base: dict | None = None) -> dict[str, str]:
        """A full environment for a subprocess that should play into this server."""
        env = dict(os.environ if base is None else base)
        env.update(self.env_vars())
        return env

    # --- life cycle -------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ports(self) -> list[str]:
        """Port names the server lists now ([] when it does not answer)."""
        try:
            out = subprocess.run(["jack_lsp", "-s", self.name], env=self.env(),
                                 capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            return []
        return out.stdout.splitlines() if out.returncode == 0 else []

    def start(self) -> "JackServer":
        if self.is_running():
            return self
        env = self.env()
        cmd = ["jackd", "-n", self.name, "--realtime" if self.realtime else "--no-realtime",
               "-d", "dummy",
               "-r", str(self.rate), "-p", str(self.period)]
        with open(self.log_path, "ab") as logf:
            self._proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"jackd {self.name!r} exited with {self._proc.returncode}: "
                                   f"{self._log_tail()}")
            if "system:playback_1" in self.ports():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"jackd {self.name!r} not up after {self.start_timeout:g} s: "
                           f"{self._log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """End the server by its PID (SIGTERM, then SIGKILL) and wait until it is gone."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def restart(self) -> "JackServer":
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "JackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _log_tail(self, n: int = 600) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"


# --- measuring what came out ------------------------------------------------------------------
def dominant_frequency(samples: np.ndarray, sample_rate: int) -> float:
    """The strongest frequency in a mono signal (Hann window, 4x zero padding, parabolic fit
    on the log magnitude): within a fraction of a cent on 250 ms of a piano-range tone."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    x = x - x.mean()
    n = len(x)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(n), 4 * n))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    return (k + offset) * sample_rate / (4 * n)


def cents(frequency: float, reference: float) -> float:
    return 1200.0 * float(np.log2(frequency / reference))
