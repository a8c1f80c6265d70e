"""Shared plumbing of the training pipeline: paths, the split by piece, parallel parsing
with a progress line, and a cache in the git-ignored build folder.

The split is decided by a hash of the piece's identity, never by window, so every window of
one tune lands in the same split and the test figures are honest.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = ROOT / "models_tflite"
BUILD_DIR = Path(os.environ.get("PIANO_BUDDY_BUILD", ROOT / "build" / "models"))
CACHE_DIR = BUILD_DIR / "cache"

SPLITS = ("train", "valid", "test")
_SPLIT_CUTS = (80, 90)  # percent: 80 train, 10 valid, 10 test

T = TypeVar("T")
R = TypeVar("R")


def split_of(piece_id: str) -> str:
    """Stable train/valid/test assignment of a whole piece from its identity string."""
    bucket = int(hashlib.sha1(piece_id.encode()).hexdigest()[:8], 16) % 100
    if bucket < _SPLIT_CUTS[0]:
        return "train"
    return "valid" if bucket < _SPLIT_CUTS[1] else "test"


class Progress:
    """One self-overwriting progress line on stderr (a plain line per update when piped)."""

    def __init__(self, desc: str, total: int, every: float = 1.0):
        self.desc, self.total, self.every = desc, max(1, total), every
        self.done, self.start, self._last = 0, time.monotonic(), 0.0
        self.tty = sys.stderr.isatty()

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last < self.every and self.done < self.total:
            return
        self._last = now
        el = now - self.start
        left = el / self.done * (self.total - self.done) if self.done else 0.0
        line = (f"{self.desc}: {self.done}/{self.total} ({100 * self.done // self.total}%) "
                f"{_fmt(el)} elapsed, ~{_fmt(left)} left {note}")
        sys.stderr.write(("\r" + line.ljust(100)) if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


def parallel_map(fn: Callable[[T], R], items: Sequence[T], desc: str,
                 workers: int | None = None) -> list[R]:
    """Map ``fn`` over ``items`` on every core, with a progress line; results in input order."""
    workers = workers or os.cpu_count() or 1
    prog = Progress(desc, len(items))
    results: list = [None] * len(items)
    if workers == 1 or len(items) < 2:
        for i, item in enumerate(items):
            results[i] = fn(item)
            prog.update()
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            for i, res in pool.imap_unordered(_Indexed(fn), list(enumerate(items)),
                                              chunksize=1):
                results[i] = res
                prog.update()
    prog.close()
    return results


class _Indexed:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, pair):
        i, item = pair
        return i, self.fn(item)


def cached(name: str, build: Callable[[], T], version: str = "1") -> T:
    """Return the pickled result of ``build()`` from the cache, building it once."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"{name}-v{version}.pkl"
    if path.exists():
        with path.open("rb") as f:
            return pickle.load(f)
    value = build()
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return value


def flatten(groups: Iterable[Iterable[T]]) -> list[T]:
    return [x for g in groups for x in g]
