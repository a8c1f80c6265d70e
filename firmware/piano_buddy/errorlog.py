"""Unexpected errors, logged with a bound: a fault that repeats every block or every edge
must not fill the SD card with tracebacks, and memory must stay bounded whatever happens.

The audio thread and the conductor both count through one :class:`ErrorLog`: the first time a
kind of error is seen its traceback is logged, then one line every ``every``-th repeat.
"""

from __future__ import annotations

import logging
import traceback

MAX_KINDS = 100          # distinct error kinds remembered; more share one bucket


class ErrorLog:
    """``record(where, exc)`` counts one error and logs it when the bound allows."""

    def __init__(self, logger: logging.Logger, carries_on: str, every: int = 1000) -> None:
        self._log, self._carries_on, self._every = logger, carries_on, every
        self._seen: dict[str, int] = {}
        self.count = 0

    def record(self, where: str, exc: BaseException) -> None:
        self.count += 1
        key = f"{where}: {type(exc).__name__}: {exc}"
        if key not in self._seen and len(self._seen) >= MAX_KINDS:
            key = "(more kinds of error)"
        n = self._seen[key] = self._seen.get(key, 0) + 1
        if n == 1:
            self._log.error("unexpected error in %s (%s)\n%s", where, self._carries_on,
                            "".join(traceback.format_exception(exc)).rstrip())
        elif n % self._every == 0:
            self._log.error("%s (repeated %d times)", key, n)
