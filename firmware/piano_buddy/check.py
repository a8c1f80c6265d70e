"""``piano-buddy check``: the installer's dry run. Validates the config, the pin map and both
models without starting the box (no GPIO line, sound card or MIDI port is opened), says
what it checked, and exits like ``run`` would: 2 for a config error, 3 for a model error.

Why a separate command: ``run`` is what systemd starts; an installer editing
``/etc/piano-buddy/config.toml`` wants to know the box will start before restarting it.
"""

from __future__ import annotations

import time
from pathlib import Path

from .errors import ConfigError, ModelError

EXIT_OK, EXIT_CONFIG, EXIT_MODEL = 0, 2, 3


def _pin_map_lines(cfg) -> list[str]:
    """The pins the config uses, and how they compare with the wiring drawing's table."""
    from . import config

    p = cfg.panel
    table = config._pin_table()
    lines = [f"buttons {list(p.buttons)}, LEDs {list(p.button_leds)}, turn LED "
             f"{p.turn_led}, volume encoder {list(p.volume_encoder) or 'none'}: header GPIOs, "
             f"none used twice, none of the reserved "
             f"{sorted(config.reserved_pins())}"]
    differ = [f"panel.{key} = {list(mine) if isinstance(mine, tuple) else mine} "
              f"(drawing: {table[key]})"
              for key, mine in (("buttons", p.buttons), ("button_leds", p.button_leds),
                                ("turn_led", p.turn_led), ("volume_encoder", p.volume_encoder))
              if (list(mine) if isinstance(mine, tuple) else mine) != table[key]]
    if differ:
        lines.append("differs from hardware/pins.toml and hardware/wiring.svg: "
                     + "; ".join(differ) + " (fine for a box wired to match)")
    else:
        lines.append("same as hardware/pins.toml (the wiring drawing)")
    return lines


def run_check(config_path: Path | None, out=print) -> int:
    """Check everything ``run`` would load; return the exit code ``run`` would give."""
    from . import config

    shown = config_path or (config.DEFAULT_PATH if config.DEFAULT_PATH.exists() else None)
    try:
        cfg = config.load(config_path)
    except ConfigError as exc:
        out(f"[FAIL] config: {exc}")
        out("check: FAILED (config); the box would stop with exit code 2")
        return EXIT_CONFIG
    out(f"[ok] config: {shown or 'no file (' + str(config.DEFAULT_PATH) + ' absent)'}: "
        "valid" + ("" if shown else ", all defaults"))
    first, *rest = _pin_map_lines(cfg)
    out(f"[ok] pins: {first}")
    for line in rest:
        out(f"     {line}")
    from .museum import describe as museum_hours
    out(f"[ok] museum: {museum_hours(cfg)}")

    from .assembly import models_folder
    from .genie import GenieDecoder, GenieEncoder
    from .melody import MelodyModel
    from .phrase import StepNote
    from .tflite import interpreter_class

    models = models_folder(cfg)
    failed = False
    for name, load in (("genie.tflite", GenieDecoder), ("genie_encoder.tflite", GenieEncoder),
                       ("melody.tflite", MelodyModel)):
        path = models / name
        t0 = time.perf_counter()
        try:
            model = load(path)
            if isinstance(model, GenieDecoder):
                detail = f"buttons 1-8 -> keys {[model.press(b, 0.2 * b, 0.0) for b in range(8)]}"
            elif isinstance(model, GenieEncoder):
                scale = [(60 + k, 0.25 * i) for i, k in enumerate((0, 2, 4, 5, 7, 9, 11, 12))]
                detail = f"a C major scale lights buttons {model.buttons_for(scale)}"
            else:
                reply = model.continue_phrase([StepNote(60, 0, 2), StepNote(64, 2, 4)], 16)
                detail = f"a 2-note primer got {len(reply)} notes back"
            backend, _ = interpreter_class()
            out(f"[ok] model: {path} ({path.stat().st_size // 1000} kB) via {backend}: "
                f"{detail} ({(time.perf_counter() - t0) * 1000:.0f} ms)")
        except ModelError as exc:
            failed = True
            out(f"[FAIL] model: {exc}")
    from .styles import GENERAL, STYLES, load_styles
    try:   # a style's file is optional: the box leaves it out (load_styles says why)
        styled = load_styles(models, GENERAL)
    except ModelError:
        styled = None                   # melody.tflite itself: reported above
    if styled is not None:
        for name, model in styled.models.items():
            if name == GENERAL:
                continue
            path = models / STYLES[name].file
            reply = model.continue_phrase([StepNote(60, 0, 2), StepNote(64, 2, 4)], 16)
            out(f"[ok] style {name}: {path} ({path.stat().st_size // 1000} kB): "
                f"a 2-note primer got {len(reply)} notes back")
        for name, why in styled.missing.items():
            out(f"[note] style {name}: {why}; the box answers in the other styles")
    if failed:
        out("check: FAILED (models); the box would stop with exit code 3")
        return EXIT_MODEL
    out("check: all good; nothing was started (the audio device and MIDI are checked by "
        "`piano-buddy selftest`)")
    return EXIT_OK
