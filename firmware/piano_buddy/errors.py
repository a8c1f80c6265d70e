"""One root exception for the firmware; each subclass also inherits the matching built-in.

Callers that only know Python's exceptions still catch them (``except OSError`` catches an
audio device that vanished), and the supervisor can catch :class:`PianoBuddyError` alone.
"""


class PianoBuddyError(Exception):
    """Base of every error the firmware raises on purpose."""


class ConfigError(PianoBuddyError, ValueError):
    """A config value is missing, mistyped or out of range; the message names the key."""


class ModelError(PianoBuddyError, RuntimeError):
    """A model file is missing, corrupt or has the wrong inputs; the message names the file."""


class AudioDeviceError(PianoBuddyError, OSError):
    """The audio device cannot be opened or stopped accepting samples."""


class MidiError(PianoBuddyError, OSError):
    """A MIDI port cannot be opened or vanished."""
