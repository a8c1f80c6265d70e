"""What a synth's render path allocates, for the no-allocation tests: one measurement, used
by the synth's and the room's tests alike."""

from __future__ import annotations

import tracemalloc
from typing import Callable

SYNTH_FILES = "*/piano_buddy/synth/*"


def render_memory(run: Callable[[], None]) -> tuple[int, int, int]:
    """(peak over the start, the whole process's growth, what the synth's own code kept)
    over ``run()``. tracemalloc sees every thread, and other tests' leftover threads
    allocate meanwhile, so what is *kept* is counted in the synth's files only; the peak
    (any per-block buffer would be kilobytes) is the process's."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()      # (itself traced: taken before the base)
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        run()
        current, peak = tracemalloc.get_traced_memory()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    own = [tracemalloc.Filter(True, SYNTH_FILES)]
    kept = sum(d.size_diff for d in after.filter_traces(own).compare_to(
        before.filter_traces(own), "filename"))
    return peak - base, current - base, kept
