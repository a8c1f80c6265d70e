"""The voice of the box: a real-time-safe numpy wavetable piano.

Threading contract:
- ``note_on``, ``note_off``, ``cancel``, ``all_notes_off``, ``set_gain`` may be called from
  any thread; they never block and never raise on a full queue, and a release is never lost
  (it goes through a flag table when the queue is full).
- ``render()`` belongs to the audio thread: it returns a preallocated int16
  (block_frames, channels) block, valid until the next call, and advances ``frame``.
- Scheduled commands (``at_frame``, absolute frames as counted by ``frame``) start on their
  exact sample; immediate ones at the start of the next block.

Modules: ``timbre`` (the analysed piano, ``piano_table.json``, interpolated per key, and
the hand-set numbers), ``wavetables`` (band-limited tables per key and band, strike noise),
``voices`` (envelopes and voice allocation), ``commands`` (the lock-free queue and release
flags), ``reverb`` (the small room), ``limiter`` (volume, compressor, limiter, ceiling,
int16), ``engine`` (the Synth), ``offline`` (render to an array or WAV).

``piano_table.json`` is made by ``python -m bench.voice_analysis`` from the FluidR3 GM piano
(Frank Wen, MIT licence; Debian ``fluid-soundfont-gm``): only the analysis is committed.
"""

from .engine import AI, MAX_TAGS, PLAYER, Synth
from .offline import render_offline, write_wav

__all__ = ["Synth", "PLAYER", "AI", "MAX_TAGS", "render_offline", "write_wav"]
