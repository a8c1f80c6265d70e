"""A child process for signal tests: the real firmware, a scripted phrase on mock pins,
then it waits for SIGTERM/SIGINT like the service does (cli's handlers, Box.close()).

Prints ``AI-TURN`` when the AI starts answering and, after shutdown, ``SOUNDING <list>``
(the synth's held notes) and ``SILENT <bool>``. Run with ALSA/JACK variables set.
"""

import logging
import sys
import threading
import time

from piano_buddy.app import Box
from piano_buddy.cli import _install_signal_handlers
from piano_buddy.config import Config, from_dict
from piano_buddy.conductor import Turn
from piano_buddy.panel import mock_factory


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    cfg: Config = from_dict({"midi": {"enabled": False}, "recording": {"enabled": False},
                             "stats": {"enabled": False},
                             "audio": {"period_frames": 128, "periods": 4},  # rig.TEST_BUFFER
                             "turns": {"reply_min": 6.0, "reply_max": 8.0}})
    stop = threading.Event()
    _install_signal_handlers(stop)
    factory = mock_factory()
    box = Box(cfg, pin_factory=factory, seed=1)
    box.start()
    pins = [factory.pin(p) for p in cfg.panel.buttons]
    for b in (0, 2, 4, 5, 7, 5, 4, 2):
        pins[b].drive_low()
        time.sleep(0.12)
        pins[b].drive_high()
        time.sleep(0.06)
    deadline = time.monotonic() + 5
    while box.conductor.turn is not Turn.AI and time.monotonic() < deadline:
        time.sleep(0.01)
    print("AI-TURN" if box.conductor.turn is Turn.AI else "NO-AI-TURN", flush=True)
    stop.wait(30)
    t0 = time.monotonic()
    box.close()
    print(f"SOUNDING {sorted(box.synth.sounding())}", flush=True)
    print(f"SILENT {box.synth.is_silent()}", flush=True)
    print(f"CLOSE-SECONDS {time.monotonic() - t0:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
