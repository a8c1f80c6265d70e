"""The ``piano-buddy`` command: run (default), demo, check, selftest, recordings, stats,
hours, config.

``run`` picks what the machine can do: the real box on a Pi (GPIO present), the desktop
simulator when standard input is a terminal (the keys come from there; the view may go to
a pipe such as ``| tee log``), and the scripted demo otherwise (CI, cron), and says which
it chose and why.
Exit codes: 0 fine, 2 bad config, 3 a model file is broken, 1 anything else; systemd
restarts on any non-zero code.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from .errors import ConfigError, ModelError, PianoBuddyError
from .styles import CHOICES as STYLE_CHOICES

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_MODEL = 0, 1, 2, 3


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(value: str) -> str:
    level = str(value).upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a log level (choose from "
                                         f"{', '.join(LOG_LEVELS)})")
    return level


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="piano-buddy", description="Piano Buddy firmware. "
                                 "Without a command: run.")
    ap.add_argument("--version", action="version", version=f"piano-buddy {__version__}")
    ap.add_argument("--config", type=Path, default=None, metavar="FILE",
                    help="config file (default /etc/piano-buddy/config.toml if present, "
                         "else every setting at its default)")
    ap.add_argument("--log-level", type=_log_level, metavar="LEVEL", default=None,
                    help=f"one of {', '.join(LOG_LEVELS)} (default: $PIANO_BUDDY_LOG or INFO)")
    # --config is also accepted after the command (`piano-buddy run --config FILE`)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                        help="config file (also accepted before the command)")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", parents=[common],
                         help="play the box (simulator without GPIO, demo without a terminal)")
    run.add_argument("--mode", choices=("auto", "box", "simulator", "demo"), default="auto",
                     help="auto (default): the box where there is GPIO, else the simulator "
                          "when stdin is a terminal, else the demo")
    demo = sub.add_parser("demo", parents=[common], help="scripted duet: writes duet.wav, duet.mid, duet.png")
    demo.add_argument("--out", type=Path, default=Path("out"), metavar="DIR",
                      help="folder for duet.wav, duet.mid and duet.png (default: out)")
    demo.add_argument("--seed", type=int, default=7,
                      help="random seed of the player and the AI (default: 7)")
    demo.add_argument("--no-play", action="store_true", help="do not play it through ALSA")
    demo.add_argument("--style", choices=STYLE_CHOICES, default=None, metavar="NAME",
                      help="the AI answers in this melody style: "
                           f"{', '.join(STYLE_CHOICES)} (writes duet-NAME.*)")
    demo.add_argument("--styles", action="store_true",
                      help="the same duet once per melody style (duet-all.*, duet-dance.*, ...)")
    demo.add_argument("--harmony", action="store_true",
                      help="the AI accompanies the player too (writes duet-harmony.*)")
    sub.add_parser("check", parents=[common],
                   help="installer's dry run: validate the config, the pin map and the models "
                        "without starting the box (exit 2 config, 3 model)")
    st = sub.add_parser("selftest", parents=[common],
                        help="installer's check: a tone per button, a press of each lit button, "
                             "the volume knob, the turn LED, the models and the sound card")
    st.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS",
                    help="how long to wait for each button press and knob turn (default: 20)")
    rec = sub.add_parser("recordings", parents=[common], help="list the recorded sessions")
    rec.add_argument("--folder", type=Path, default=None, metavar="DIR",
                     help="folder to list (default: recording.folder of the config)")
    stats = sub.add_parser("stats", parents=[common],
                           help="print the visitor counts: visitors, presses, AI replies, "
                                "interrupts, average session, faults")
    stats.add_argument("--folder", type=Path, default=None, metavar="DIR",
                       help="folder of counts.json (default: stats.folder of the config)")
    hrs = sub.add_parser("hours", parents=[common],
                         help="the museum's opening hours ([museum]): the phase now and the "
                              "timers they give")
    how = hrs.add_mutually_exclusive_group()
    how.add_argument("--condition", action="store_true",
                     help="the unit's ExecCondition: exit 0 to start, 1 while closed")
    how.add_argument("--generate", type=Path, metavar="DIR", default=None,
                     help="systemd generator: write the timers into DIR (e.g. "
                          "/run/systemd/generator)")
    sub.add_parser("config", parents=[common],
                   help="print every setting with its default and allowed range "
                        "(with --config: that file's values, after validating it)")
    return ap


def choose_mode(has_gpio: bool, stdin_is_terminal: bool) -> tuple[str, str]:
    """``run --mode auto``: (mode, the reason, for the user). The keys come from stdin, so
    stdin decides between the simulator and the demo; stdout may be a pipe (``| tee log``)."""
    if has_gpio:
        return "box", "a GPIO chip is present (/dev/gpiochip*)"
    if stdin_is_terminal:
        return "simulator", "no GPIO chip; standard input is a terminal"
    return "demo", "no GPIO chip; standard input is not a terminal (a pipe, CI)"


def _install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum, _frame):
        logging.getLogger("piano_buddy").info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _hours(cfg, args, source: Path) -> int:
    """``piano-buddy hours``: print the phase and the timers, or act as the unit's
    ExecCondition (--condition) or as the systemd generator (--generate DIR)."""
    from . import museum
    if args.condition:
        code, why = museum.condition(cfg)
        print(f"piano-buddy: {why}", file=sys.stderr)
        return code
    if args.generate is not None:
        written = museum.generate(cfg, args.generate, str(source))
        if written:
            print(f"piano-buddy-hours-generator: {', '.join(written)} from {source}",
                  file=sys.stderr)
        return EXIT_OK
    print(museum.describe(cfg))
    for name, text in museum.timer_units(cfg, str(source)).items():
        print(f"\n# {name}\n{text}", end="")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    level = args.log_level
    if level is None:
        try:
            level = _log_level(os.environ.get("PIANO_BUDDY_LOG", "INFO"))
        except argparse.ArgumentTypeError as exc:
            ap.error(f"$PIANO_BUDDY_LOG: {exc}")
    logging.basicConfig(level=getattr(logging, level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("piano_buddy")
    command = args.command or "run"
    try:
        from . import config
        if command == "config":
            print(config.describe(config.load(args.config) if args.config else None))
            return EXIT_OK
        if command == "check":
            from .check import run_check
            return run_check(args.config)
        cfg = config.load(args.config)
        if command == "hours":
            return _hours(cfg, args, args.config or config.DEFAULT_PATH)
        if command == "recordings":
            from .recorder import main_recordings
            from .terminal import SIMULATOR_RECORDINGS
            folder = args.folder or Path(cfg.recording.folder)
            if args.folder is None and not folder.is_dir() and SIMULATOR_RECORDINGS.is_dir():
                print(f"({folder} does not exist here: showing the desktop simulator's "
                      f"{SIMULATOR_RECORDINGS})")
                folder = SIMULATOR_RECORDINGS
            return main_recordings(folder)
        if command == "stats":
            from .counts import format_counts, read_counts, stats_folder
            from .terminal import counts_folder
            folder = args.folder or stats_folder(cfg)
            if args.folder is None and not folder.is_dir():
                simulator = counts_folder(cfg)
                if simulator != folder and simulator.is_dir():
                    print(f"({folder} does not exist here: showing the desktop simulator's "
                          f"{simulator})")
                    folder = simulator
            try:
                print(format_counts(read_counts(folder), folder))
            except ValueError as exc:
                print(f"piano-buddy: {exc}", file=sys.stderr)
                return EXIT_FAILURE
            return EXIT_OK
        if command == "selftest":
            from .selftest import run_selftest
            return run_selftest(cfg, press_timeout=args.timeout)
        if command == "demo":
            from .demo import run_demo
            return run_demo(cfg, args.out, seed=args.seed, play=not args.no_play,
                            harmony=args.harmony, style=args.style, every_style=args.styles)
        mode, why = getattr(args, "mode", "auto"), "chosen with --mode"
        if mode == "auto":
            from .panel import has_gpio
            mode, why = choose_mode(has_gpio(), sys.stdin.isatty())
            names = {"box": "the box", "simulator": "the desktop simulator",
                     "demo": "the built-in demo (writes out/duet.wav, .mid, .png)"}
            print(f"piano-buddy: {why}: starting {names[mode]} "
                  f"(choose with `run --mode box|simulator|demo`)", file=sys.stderr, flush=True)
        if mode == "demo":
            from .demo import run_demo
            return run_demo(cfg, Path("out"))
        stop = threading.Event()
        _install_signal_handlers(stop)
        if mode == "simulator":
            from .terminal import run_simulator
            return run_simulator(cfg, stop, why=why)
        from .app import run_service
        from .thread_names import name_this_thread
        name_this_thread("pb-supervisor")
        return run_service(cfg, stop)
    except ConfigError as exc:
        print(f"piano-buddy: config error: {exc}", file=sys.stderr)
        if command == "hours" and getattr(args, "condition", False):
            return EXIT_OK      # ExecCondition: never hide a bad config; `run` reports it
        return EXIT_CONFIG
    except ModelError as exc:
        print(f"piano-buddy: model error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    except PianoBuddyError as exc:
        print(f"piano-buddy: {exc}", file=sys.stderr)
        return EXIT_FAILURE
