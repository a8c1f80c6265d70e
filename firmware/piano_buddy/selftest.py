"""``piano-buddy selftest``: the installer's check of a freshly built box.

Reports the pin map, loads and runs both models, opens the audio device, plays a tone per
button with its lamp lit (a rising scale), then lights each button's lamp in turn and waits
for that button to be pressed, asks for the volume knob to be turned both ways, and lights
the turn LED. Each check says whether it passed and, if not, which GPIO to look at. Exit
code 0 when everything passed, 1 otherwise.

It needs the GPIO lines and the sound card, which the running service holds: as root it
stops ``piano-buddy.service`` for the test and starts it again afterwards; as anyone else it
refuses with the exact commands to run. lgpio needs a writable working directory for its
notification pipes, so the test runs in a temporary one when the current one is not.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import tempfile
import time

from .config import Config

SCALE = (60, 62, 64, 65, 67, 69, 71, 72)   # one tone per button, low to high
TONE_SECONDS = 0.35
PRESS_TIMEOUT = 20.0     # seconds to press a lit button (or turn the knob) before FAIL
SERVICE = "piano-buddy.service"
SELFTEST_COMMAND = "/opt/piano-buddy/venv/bin/piano-buddy selftest"


class ServiceBusy(Exception):
    """The service holds the hardware and this user may not stop it."""


@contextlib.contextmanager
def service_stopped(run=subprocess.run, is_root: bool | None = None, out=print):
    """Stop the running service for the duration of the test and start it again after;
    do nothing where there is no systemd or the service is not running. ServiceBusy when
    it runs and we are not root (stopping it needs root)."""
    if shutil.which("systemctl") is None:
        yield
        return
    try:
        active = run(["systemctl", "is-active", "--quiet", SERVICE], timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        active = False
    if not active:
        yield
        return
    if is_root is None:
        is_root = os.geteuid() == 0
    if not is_root:
        raise ServiceBusy(
            f"{SERVICE} is running and holds the GPIO lines and the sound card. Either run "
            f"the selftest as root, which stops the service and starts it again:\n"
            f"    sudo {SELFTEST_COMMAND}\n"
            f"or stop it yourself, test, and start it again:\n"
            f"    sudo systemctl stop piano-buddy && sudo -u piano-buddy {SELFTEST_COMMAND}; "
            f"sudo systemctl start piano-buddy")
    out(f"stopping {SERVICE} for the test (it is started again afterwards)")
    run(["systemctl", "stop", SERVICE], timeout=30, check=False)
    try:
        yield
    finally:
        out(f"starting {SERVICE} again")
        run(["systemctl", "start", SERVICE], timeout=60, check=False)


@contextlib.contextmanager
def writable_working_directory():
    """lgpio creates its notification FIFOs (.lgd-nfy*) in the working directory: run in a
    temporary one when the current one (say, a checkout owned by someone else) is read-only."""
    cwd = os.getcwd()
    if os.access(cwd, os.W_OK):
        yield cwd
        return
    tmp = tempfile.mkdtemp(prefix="piano-buddy-selftest-")
    os.chdir(tmp)
    try:
        yield tmp
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)


def run_selftest(cfg: Config, *, pin_factory=None, open_sink=None, out=print,
                 press_timeout: float = PRESS_TIMEOUT, manage_service: bool = True) -> int:
    """The whole check; returns the exit code."""
    if manage_service:
        try:
            with service_stopped(out=out), writable_working_directory():
                return _selftest(cfg, pin_factory, open_sink, out, press_timeout)
        except ServiceBusy as exc:
            out(f"selftest: not started: {exc}")
            return 1
    with writable_working_directory():
        return _selftest(cfg, pin_factory, open_sink, out, press_timeout)


def _selftest(cfg: Config, pin_factory, open_sink, out, press_timeout: float) -> int:
    from . import assembly
    from .alsa_quiet import quiet_alsa_errors
    from .events import Kind
    from .panel import choose_pin_factory

    results: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        results.append((name, ok, detail))
        out(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")

    p = cfg.panel
    presses: queue.Queue = queue.Queue()
    volumes: queue.Queue = queue.Queue()
    factory = pin_factory or choose_pin_factory()[0]
    try:
        panel = assembly.build_panel(
            cfg, lambda ev: presses.put(ev) if ev.kind is Kind.PRESS else None,
            pin_factory=factory, clock=time.monotonic, on_volume=volumes.put)
    except Exception as exc:
        check("pins", False, f"{exc} (is the user in the gpio group, and is no other "
                             "program using the pins?)")
        panel = None
    else:
        kind = type(panel.buttons[0].pin_factory).__name__
        out("button  pin  LED pin")
        for i, (b, led) in enumerate(zip(p.buttons, p.button_leds)):
            out(f"  {i + 1}     {b:>3}  {led:>5}")
        check("pins", True, f"{kind}; turn LED GPIO {p.turn_led}; volume encoder "
                            f"{list(p.volume_encoder) or 'none'}")

    models = assembly.models_folder(cfg)        # each model on its own: both are reported
    try:
        from .genie import GenieDecoder
        t0 = time.perf_counter()
        g = GenieDecoder(models / "genie.tflite")
        keys = [g.press(b, 0.2 * b, 0.0) for b in range(8)]
        check("genie model", True, f"{models / 'genie.tflite'}: buttons 1-8 -> {keys} "
                                   f"({(time.perf_counter() - t0) * 1000:.0f} ms)")
    except Exception as exc:
        check("genie model", False, str(exc))
    try:
        from .phrase import StepNote
        from .styles import GENERAL, STYLES, load_styles
        styled = load_styles(models, cfg.turns.style)
        primer = [StepNote(60 + 2 * i, 2 * i, 2 * i + 2) for i in range(4)]
        replies = {name: len(m.continue_phrase(primer, 16)) for name, m in styled.models.items()}
        check("melody model", replies[GENERAL] > 0, f"{models / STYLES[GENERAL].file}: "
                                                    f"a 4-note primer got {replies[GENERAL]} "
                                                    "notes back")
        check("melody styles", len(styled.models) == len(STYLES) and all(replies.values()),
              ", ".join(f"{name}: {n} notes" for name, n in replies.items())
              + "".join(f"; {name} left out: {why}" for name, why in styled.missing.items()))
    except Exception as exc:
        check("melody model", False, str(exc))

    a = cfg.audio
    sink = (open_sink or assembly.alsa_sink_factory(cfg))()
    try:
        with quiet_alsa_errors():
            sink.open()
        check("audio device", True, f"{a.device!r} open at {a.sample_rate} Hz")
        audio_ok = True
    except Exception as exc:
        check("audio device", False, f"{exc} (see hardware/README.md: config.txt overlay, "
                                     "aplay -l)")
        audio_ok = False

    synth = assembly.build_synth(cfg)
    blocks = max(1, round(TONE_SECONDS * a.sample_rate / a.period_frames))

    def tone(pitch: int) -> None:
        synth.note_on(pitch, 100)
        for k in range(blocks):
            if k == blocks * 2 // 3:
                synth.note_off(pitch)
            block = synth.render()
            if audio_ok:
                sink.write(block)
            else:
                time.sleep(a.period_frames / a.sample_rate)

    try:
        try:
            for i, pitch in enumerate(SCALE):
                if panel is not None:
                    panel.button_led(i, True)
                tone(pitch)
                if panel is not None:
                    panel.button_led(i, False)
            if audio_ok:
                check("tones", True, "eight rising tones, one per button, each with its LED lit")
        except Exception as exc:
            check("tones", False, str(exc))
        if panel is not None:
            _check_buttons(panel, p, presses, press_timeout, out, check,
                           lambda i: tone(SCALE[i]))
            _check_encoder(panel, p, volumes, press_timeout, out, check)
            panel.turn("ai")
            out(f"the turn LED (GPIO {p.turn_led}) is lit for a second")
            time.sleep(1.0)
            panel.all_off()
    finally:
        sink.close()
        if panel is not None:
            panel.close()

    failed = [name for name, ok, _ in results if not ok]
    out(f"selftest: {len(results) - len(failed)} passed, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def _settle(q: queue.Queue, timeout: float, quiet: float = 0.5) -> None:
    """Wait until nothing arrives for ``quiet`` seconds (at most ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            q.get(timeout=quiet)
        except queue.Empty:
            return


def _check_buttons(panel, p, presses: queue.Queue, timeout: float, out, check, beep) -> None:
    """Each lamp in turn, waiting for its own button: a wrong button names both GPIOs
    (swapped wires), no press names the GPIO to look at."""
    missing, wrong = [], []
    for i, gpio in enumerate(p.buttons):
        _drain(presses)
        panel.button_led(i, True)
        out(f"press button {i + 1}, the lit one (switch on GPIO {gpio}; waiting "
            f"{timeout:g} s)")
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            try:
                ev = presses.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if ev.source == i:
                got = ev
                break
            wrong.append(f"button {i + 1} was lit but GPIO {p.buttons[ev.source]} (wired as "
                         f"button {ev.source + 1}) answered")
            out(f"  that was button {ev.source + 1} (GPIO {p.buttons[ev.source]}); "
                f"press button {i + 1}")
        panel.button_led(i, False)
        if got is None:
            missing.append(f"button {i + 1}: no press on GPIO {gpio} in {timeout:g} s "
                           f"(switch NO to GPIO {gpio}, COM to GND)")
        else:
            beep(i)
    problems = missing + wrong
    check("buttons", not problems, "; ".join(problems) if problems
          else "each of the eight buttons pressed when its lamp was lit")


def _check_encoder(panel, p, volumes: queue.Queue, timeout: float, out, check) -> None:
    """Clockwise must raise the volume and counter-clockwise lower it: no movement names
    both GPIOs, the wrong direction means A and B are swapped."""
    if not p.volume_encoder:
        check("volume knob", True, "none configured (panel.volume_encoder = [])")
        return
    a, b = p.volume_encoder
    problems = []
    for direction, sign in (("clockwise (louder)", 1), ("counter-clockwise (quieter)", -1)):
        _drain(volumes)
        start = (panel.encoder.steps + 20) / 40
        out(f"turn the volume knob {direction} a few clicks (waiting {timeout:g} s)")
        deadline = time.monotonic() + timeout
        moved = None
        while time.monotonic() < deadline:
            try:
                level = volumes.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if abs(level - start) >= 0.05 - 1e-9:      # two clicks: a decided turn
                moved = level - start
                break
        _settle(volumes, timeout)     # the hand is still turning: wait for the knob to rest
        if moved is None:
            problems.append(f"no {direction.split()[0]} turn seen on GPIO {a} (A) and {b} "
                            f"(B) in {timeout:g} s (encoder C to GND)")
        elif (moved > 0) != (sign > 0):
            problems.append(f"turning {direction.split()[0]} went the other way: A and B "
                            f"are swapped (swap the wires on GPIO {a} and {b}, or the "
                            f"numbers in panel.volume_encoder)")
    check("volume knob", not problems, "; ".join(problems) if problems
          else f"louder clockwise, quieter counter-clockwise (GPIO {a} and {b})")
