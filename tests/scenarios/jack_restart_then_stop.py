"""A child process for the JACK-restart test: the real box with MIDI on (JACK MIDI ports)
and the recorder on. Protocol on stdin/stdout with the parent test:

  child: PLAYED            (a phrase went through the pins and was recorded)
  parent stops and restarts the JACK server, then writes "restarted"
  child: REOPENED <bool>   (MIDI out came back on the new server within 15 s)
  parent sends SIGTERM; the child closes the box like the service and prints CLOSED.

Run with the JACK server's variables and PIANO_BUDDY_MIDI=tests.midi_jack set; argv[1] is the recordings folder.
"""

import logging
import sys
import threading
import time

from piano_buddy.app import Box
from piano_buddy.cli import _install_signal_handlers
from piano_buddy.config import from_dict
from piano_buddy.panel import mock_factory


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    cfg = from_dict({"recording": {"folder": sys.argv[1]},
                     "audio": {"period_frames": 128, "periods": 4}})   # rig.TEST_BUFFER
    stop = threading.Event()
    _install_signal_handlers(stop)
    factory = mock_factory()
    box = Box(cfg, pin_factory=factory, seed=1)
    box.start()
    supervisor = threading.Thread(target=box.supervise, args=(stop,), daemon=True)
    supervisor.start()
    pins = [factory.pin(p) for p in cfg.panel.buttons]
    for b in (0, 2, 4):
        pins[b].drive_low()
        time.sleep(0.1)
        pins[b].drive_high()
        time.sleep(0.05)
    print("PLAYED", flush=True)
    sys.stdin.readline()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (box.midi_out and box.midi_out.reopened):
        time.sleep(0.1)
    print(f"REOPENED {bool(box.midi_out and box.midi_out.reopened)}", flush=True)
    stop.wait(30)
    supervisor.join(2)
    box.close()
    print("CLOSED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
