"""Tell systemd how the box is doing: the sd_notify protocol, with no dependency.

Why our own client: the protocol is one datagram of ``KEY=value`` lines to the unix socket
named in ``$NOTIFY_SOCKET``, and the libraries that wrap it (python-systemd, sdnotify) add a C
build or a package for twenty lines. With ``Type=notify`` and ``WatchdogSec=`` in the unit,
systemd waits for ``READY=1`` before calling the service started, and restarts it when the
``WATCHDOG=1`` pings stop: so the firmware pings only while the audio thread and the
conductor both make progress (:class:`Watchdog`), and a hung thread ends in a restart.

Outside systemd (a terminal, the tests without a socket) :class:`Notifier` is disabled and
every call is a no-op, so callers never need to ask.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping

__all__ = ["Notifier", "Watchdog", "HeartbeatCheck"]


class Notifier:
    """An sd_notify client for ``$NOTIFY_SOCKET`` (path or abstract ``@name``).

    Sending never raises: a notification that cannot be delivered (systemd restarting, the
    socket gone) must not take the box down; :attr:`last_error` keeps the reason.
    """

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self._env = dict(env)
        self._address = self._parse_address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.last_error: OSError | None = None

    @staticmethod
    def _parse_address(raw: str) -> str | bytes | None:
        if not raw:
            return None
        if raw.startswith("@"):
            # Linux abstract namespace: a leading NUL byte instead of the '@'.
            return b"\0" + raw[1:].encode()
        if raw.startswith("/"):
            return raw
        return None   # vsock and other forms are not used on a Pi

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: object) -> bool:
        """Send ``KEY=value`` lines (keys upper-cased); True if the datagram went out."""
        if self._address is None:
            return False
        message = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    # never block the supervisor: a reader that stopped reading (a full
                    # datagram queue) costs one lost ping, not a hung main thread
                    self._sock.setblocking(False)
                self._sock.sendto(message, self._address)
            except OSError as exc:
                self.last_error = exc
                self._close_locked()
                return False
        return True

    def ready(self, status: str = "") -> bool:
        """The models are loaded and audio is open: systemd may call the service started."""
        return self.send(ready=1, status=status) if status else self.send(ready=1)

    def watchdog(self) -> bool:
        return self.send(watchdog=1)

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status piano-buddy``."""
        return self.send(status=text.replace("\n", " "))

    def stopping(self) -> bool:
        return self.send(stopping=1)

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of ``WATCHDOG_USEC``), or None when no watchdog is set.

        ``WATCHDOG_PID``, when present, names the process the watchdog is meant for; a child
        that inherited the environment must not ping on its parent's behalf.
        """
        usec = self._env.get("WATCHDOG_USEC", "")
        pid = self._env.get("WATCHDOG_PID", "")
        if pid and pid != str(os.getpid()):
            return None
        try:
            value = int(usec)
        except ValueError:
            return None
        if value <= 0:
            return None
        return value / 2e6

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HeartbeatCheck:
    """True when a counter moved since the last call: "the audio thread rendered a block".

    ``read`` returns the counter (the audio thread's frame count, the conductor's loop count);
    reading an int another thread increments is safe under the GIL.
    """

    def __init__(self, read: Callable[[], int], name: str = ""):
        self._read = read
        self._last = read()
        self.name = name or getattr(read, "__name__", "heartbeat")

    def __call__(self) -> bool:
        now = self._read()
        moved = now != self._last
        self._last = now
        return moved


class Watchdog:
    """Pings ``WATCHDOG=1`` only while every check passes.

    The supervisor calls :meth:`tick` every :meth:`Notifier.watchdog_interval` seconds (from
    its ``event.wait(timeout)`` loop). One failing check withholds the ping; systemd then
    kills and restarts the service after ``WatchdogSec``. :attr:`failed` names the checks
    that failed on the last tick, for the log.
    """

    def __init__(self, notifier: Notifier, checks: list[Callable[[], bool]]):
        self.notifier = notifier
        self.checks = list(checks)
        self.failed: list[str] = []
        self.pings = 0

    def tick(self) -> bool:
        """Run every check (all of them, so heartbeat baselines stay current); ping if all pass."""
        failed = []
        for check in self.checks:
            try:
                ok = bool(check())
            except Exception:   # a broken check is a failed check, never a crashed supervisor
                ok = False
            if not ok:
                failed.append(getattr(check, "name", None) or getattr(check, "__name__", repr(check)))
        self.failed = failed
        if failed:
            return False
        self.notifier.watchdog()
        self.pings += 1
        return True
