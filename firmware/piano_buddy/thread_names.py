"""Give the firmware's threads names the operating system shows (``top -H``, ``ps -L``,
``/proc/PID/task/*/comm``), so a technician - and the benchmark - can tell the audio thread
from the conductor and from threads that libraries start."""

from __future__ import annotations

import ctypes
import ctypes.util

_PR_SET_NAME = 15
_libc = None


def name_this_thread(name: str) -> bool:
    """Set the calling thread's OS name (15 bytes at most). False where not supported."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
