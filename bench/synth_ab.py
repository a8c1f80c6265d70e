"""The render path against another checkout's, interleaved in one process:
``python -m bench.synth_ab /path/to/other/firmware [--block 64] [--rounds 30]``.

On a shared machine a figure moves with the neighbours' load, so a change to the render
path is measured as a ratio: both synths (16 voices held at v127, the room on) render half
a second in turn, ``rounds`` times, and the least and median CPU time of each are printed
with their ratios (the two tries of a round meet the same load). The other checkout's
package is imported under another name from a temporary copy.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 48000


def _held(module, block: int):
    synth = module.Synth(sample_rate=SR, block_frames=block, channels=2, voices=16,
                         max_hold_s=None, reverb=True)
    for i in range(16):
        synth.note_on(21 + (i * 87) // 15, 127)
    for _ in range(max(20, int(0.1 * SR) // block + 1)):    # (past the strikes: 75 ms)
        synth.render()
    return synth


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", type=Path, help="a firmware folder holding piano_buddy/")
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(args.other / "piano_buddy", Path(tmp) / "piano_buddy_other")
        sys.path.insert(0, tmp)
        other = importlib.import_module("piano_buddy_other.synth")
        import piano_buddy.synth as ours
        synths = {"other": _held(other, args.block), "this": _held(ours, args.block)}
        cpu = {k: [] for k in synths}
        blocks = SR // args.block // 2
        for _ in range(args.rounds):
            for name, synth in synths.items():
                t = time.process_time()
                for _ in range(blocks):
                    synth.render()
                cpu[name].append(200 * (time.process_time() - t))
    for name, v in cpu.items():
        print(f"{name}: least {min(v):.2f} %, median {np.median(v):.2f} % of one core")
    print(f"this / other: least {min(cpu['this']) / min(cpu['other']):.3f}, "
          f"median {np.median(cpu['this']) / np.median(cpu['other']):.3f} "
          f"({args.block}-frame blocks, {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
