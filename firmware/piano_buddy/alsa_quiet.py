"""Keep alsa-lib's own error printing off the screen.

alsa-lib writes lines such as ``ALSA lib confmisc.c:855:(parse_card) cannot find card '0'``
straight to standard error when a device is missing, before our code sees the exception:
eight of them before the simulator's one friendly line, and over its live view on every
retry. alsa-lib lets a program replace that printer (``snd_lib_error_set_handler``); while
:func:`quiet_alsa_errors` is active it is a function that prints nothing, and the firmware's
own message (which names the device and the reason) is the only one shown. The handler is
process-wide, the same libasound that pyalsaaudio uses.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading

# void handler(const char *file, int line, const char *function, int err, const char *fmt, ...)
# A C variadic function called with these five fixed arguments first: a callback declared
# with just them is safe on the ABIs the Pi and the PC use (aarch64, x86_64).
_HANDLER_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_char_p)
_lock = threading.Lock()
_depth = 0
_lib = None


def _silent(file, line, function, err, fmt):   # noqa: ARG001 - the C signature
    pass


_SILENT = _HANDLER_TYPE(_silent)   # kept referenced for as long as the process lives


def _libasound():
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("asound") or "libasound.so.2"
        _lib = ctypes.CDLL(name)
        _lib.snd_lib_error_set_handler.argtypes = [ctypes.c_void_p]
        _lib.snd_lib_error_set_handler.restype = ctypes.c_int
    return _lib


def set_quiet(on: bool) -> bool:
    """Silence (or restore) alsa-lib's error printer. False when libasound is missing."""
    try:
        lib = _libasound()
    except OSError:
        return False
    lib.snd_lib_error_set_handler(ctypes.cast(_SILENT, ctypes.c_void_p) if on else None)
    return True


@contextlib.contextmanager
def quiet_alsa_errors():
    """Within this block (nestable, any thread) alsa-lib prints nothing of its own."""
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1:
            set_quiet(True)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                set_quiet(False)
