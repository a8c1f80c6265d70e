"""``piano-buddy selftest``: the installer's check of a freshly built box.

Reports the pin map, loads and runs both models, opens the audio device, then lights each
button's LED in turn while playing a tone for that button (a rising scale), and finally the
turn LED. Each check says clearly whether it passed and, if not, what to look at. Exit code
0 when everything passed, 1 otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import Config

SCALE = (60, 62, 64, 65, 67, 69, 71, 72)   # one tone per button, low to high
TONE_SECONDS = 0.35


def run_selftest(cfg: Config, *, pin_factory=None, open_sink=None, out=print) -> int:
    from . import paths
    from .audio_out import AlsaSink
    from .panel import Panel, has_gpio, mock_factory

    results: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        results.append((name, ok, detail))
        out(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")

    p = cfg.panel
    factory = pin_factory or (None if has_gpio() else mock_factory())
    try:
        panel = Panel(p, lambda ev: None, pin_factory=factory)
    except Exception as exc:
        check("pins", False, f"{exc} (is the gpio group set and the pin free?)")
        panel = None
    else:
        kind = type(panel.buttons[0].pin_factory).__name__
        out("button  pin  LED pin")
        for i, (b, led) in enumerate(zip(p.buttons, p.button_leds)):
            out(f"  {i + 1}     {b:>3}  {led:>5}")
        check("pins", True, f"{kind}; turn LED GPIO {p.turn_led}; volume encoder "
                            f"{list(p.volume_encoder) or 'none'}")

    models = Path(cfg.models.directory) if cfg.models.directory else paths.models_dir()
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
        from .melody import MelodyModel
        from .phrase import StepNote
        m = MelodyModel(models / "melody.tflite")
        reply = m.continue_phrase([StepNote(60 + 2 * i, 2 * i, 2 * i + 2) for i in range(4)],
                                  16)
        check("melody model", bool(reply), f"{models / 'melody.tflite'}: "
                                           f"a 4-note primer got {len(reply)} notes back")
    except Exception as exc:
        check("melody model", False, str(exc))

    a = cfg.audio
    sink = (open_sink or (lambda: AlsaSink(a.device, sample_rate=a.sample_rate, channels=2,
                                           period_frames=a.period_frames,
                                           periods=a.periods)))()
    try:
        sink.open()
        check("audio device", True, f"{a.device!r} open at {a.sample_rate} Hz")
        audio_ok = True
    except Exception as exc:
        check("audio device", False, f"{exc} (see hardware/README.md: config.txt overlay, "
                                     "aplay -l)")
        audio_ok = False

    from .synth import Synth
    synth = Synth(sample_rate=a.sample_rate, block_frames=a.period_frames, voices=a.voices,
                  ceiling_dbfs=a.ceiling_dbfs, gain=a.volume)
    blocks = max(1, round(TONE_SECONDS * a.sample_rate / a.period_frames))
    try:
        for i, pitch in enumerate(SCALE):
            if panel is not None:
                panel.button_led(i, True)
            synth.note_on(pitch, 100)
            for k in range(blocks):
                if k == blocks * 2 // 3:
                    synth.note_off(pitch)
                block = synth.render()
                if audio_ok:
                    sink.write(block)
                else:
                    time.sleep(a.period_frames / a.sample_rate)
            if panel is not None:
                panel.button_led(i, False)
        if panel is not None:
            panel.turn("ai")
            time.sleep(0.5)
            panel.all_off()
        if audio_ok:
            check("tones", True, "eight rising tones, one per button, each with its LED lit")
    except Exception as exc:
        check("tones", False, str(exc))
    finally:
        sink.close()
        if panel is not None:
            panel.close()

    failed = [name for name, ok, _ in results if not ok]
    out(f"selftest: {len(results) - len(failed)} passed, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0
