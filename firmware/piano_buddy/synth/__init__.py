"""The voice of the box: a real-time-safe numpy wavetable piano.

Threading contract:
- ``note_on``, ``note_off``, ``cancel``, ``all_notes_off``, ``set_gain`` may be called from
  any thread; they never block and never raise on a full queue, and a release is never lost
  (it goes through a flag table when the queue is full).
- ``render()`` belongs to the audio thread: it returns a preallocated int16
  (block_frames, channels) block, valid until the next call, and advances ``frame``.
- Scheduled commands (``at_frame``, absolute frames as counted by ``frame``) start on their
  exact sample; immediate ones at the start of the next block.

Modules: ``timbre`` (the register table), ``wavetables`` (band-limited tables per key),
``voices`` (envelopes and voice allocation), ``commands`` (the lock-free queue and release
flags), ``limiter`` (volume, limiter, ceiling, int16), ``engine`` (the Synth), ``offline``
(render to an array or WAV).
"""

from .engine import AI, MAX_TAGS, PLAYER, Synth
from .offline import render_offline, write_wav

__all__ = ["Synth", "PLAYER", "AI", "MAX_TAGS", "render_offline", "write_wav"]
