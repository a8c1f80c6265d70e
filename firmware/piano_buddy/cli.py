"""The ``piano-buddy`` command: run (default), demo, selftest, recordings, config.

``run`` picks what the machine can do: the real box on a Pi (GPIO present), the desktop
simulator at a terminal, and the scripted demo when there is no terminal (CI, a pipe).
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

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_MODEL = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="piano-buddy", description="Piano Buddy firmware")
    ap.add_argument("--version", action="version", version=f"piano-buddy {__version__}")
    ap.add_argument("--config", type=Path, default=None,
                    help="config file (default /etc/piano-buddy/config.toml if present)")
    ap.add_argument("--log-level", default=os.environ.get("PIANO_BUDDY_LOG", "INFO"))
    # --config is also accepted after the command (`piano-buddy run --config FILE`)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    sub = ap.add_subparsers(dest="command")
    run = sub.add_parser("run", parents=[common],
                         help="play the box (simulator without GPIO, demo without a terminal)")
    run.add_argument("--mode", choices=("auto", "box", "simulator", "demo"), default="auto")
    demo = sub.add_parser("demo", parents=[common], help="scripted duet: writes duet.wav, duet.mid, duet.png")
    demo.add_argument("--out", type=Path, default=Path("out"))
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--no-play", action="store_true", help="do not play it through ALSA")
    sub.add_parser("selftest", parents=[common], help="installer's check: LEDs, a tone per button, devices")
    rec = sub.add_parser("recordings", parents=[common], help="list the recorded sessions")
    rec.add_argument("--folder", type=Path, default=None)
    sub.add_parser("config", help="print every setting with its default and allowed range")
    return ap


def _install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum, _frame):
        logging.getLogger("piano_buddy").info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("piano_buddy")
    command = args.command or "run"
    try:
        from . import config
        if command == "config":
            print(config.describe())
            return EXIT_OK
        cfg = config.load(args.config)
        if command == "recordings":
            from .recorder import main_recordings
            return main_recordings(args.folder or Path(cfg.recording.folder))
        if command == "selftest":
            from .selftest import run_selftest
            return run_selftest(cfg)
        if command == "demo":
            from .demo import run_demo
            return run_demo(cfg, args.out, seed=args.seed, play=not args.no_play)
        mode = getattr(args, "mode", "auto")
        if mode == "auto":
            from .panel import has_gpio
            mode = "box" if has_gpio() else ("simulator" if sys.stdin.isatty()
                                             and sys.stdout.isatty() else "demo")
        if mode == "demo":
            from .demo import run_demo
            log.info("no GPIO and no terminal: playing the built-in demo")
            return run_demo(cfg, Path("out"))
        stop = threading.Event()
        _install_signal_handlers(stop)
        if mode == "simulator":
            from .terminal import run_simulator
            return run_simulator(cfg, stop)
        from .app import run_service
        from .thread_names import name_this_thread
        name_this_thread("pb-supervisor")
        return run_service(cfg, stop)
    except ConfigError as exc:
        print(f"piano-buddy: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ModelError as exc:
        print(f"piano-buddy: model error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    except PianoBuddyError as exc:
        print(f"piano-buddy: {exc}", file=sys.stderr)
        return EXIT_FAILURE
