"""Hear other processes' writes as they commit, and catch up at once (PostgreSQL ``LISTEN``).

The store announces each log append and each watched key it writes (``store.notices()``; on
PostgreSQL a ``NOTIFY`` sent at commit). A :class:`Listener` holds one dedicated connection
that hears them, in a daemon thread, and on each announcement (a burst folded into one) runs
the catch-up the periodic poll runs. When the connection dies (server restart,
``pg_terminate_backend``) it reconnects with exponential backoff and catches up once
reconnected, since it may have missed announcements while down. The poll stays as the
fallback (and is the only path on SQLite, which announces nothing).

Pure: it knows the connection only as a ``store.ports.NoticeConnection``, so it never imports
psycopg and tests drive it with a fake.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from tastegraph.store.ports import NoticeConnection

__all__ = ["Listener"]

log = logging.getLogger("tastegraph")


class Listener:
    """Runs ``on_change`` whenever another process announces a write (see module doc)."""

    def __init__(
        self,
        connect: Callable[[], NoticeConnection],
        on_change: Callable[[], object],
        *,
        wait_s: float = 1.0,
        settle_s: float = 0.02,
        max_fold_s: float = 0.2,
        backoff_s: tuple[float, float] = (0.1, 5.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < backoff_s[0] <= backoff_s[1]:
            raise ValueError(f"backoff_s must be (first, most) with 0 < first <= most: {backoff_s}")
        self._connect = connect
        self._on_change = on_change
        self._wait_s = wait_s
        self._settle_s = settle_s  # an announcement within this of the last one joins it
        self._max_fold_s = max_fold_s  # a steady stream still catches up this often
        self._backoff = backoff_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False
        self.reconnects = 0  # connections made after the first
        self.notifications = 0
        self.catch_ups = 0
        self.last_notification: str | None = None  # UTC ISO time
        self.last_error: str | None = None
        self.next_delay_s = backoff_s[0]

    def state(self) -> dict[str, Any]:
        """What ``/ready`` shows under ``checks.listener``."""
        return {
            "connected": self.connected,
            "reconnects": self.reconnects,
            "notifications": self.notifications,
            "catch_ups": self.catch_ups,
            "last_notification": self.last_notification,
            "last_error": self.last_error,
        }

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="store-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Listen until :meth:`stop`: connect, catch up, then catch up on each announcement;
        on a lost connection, back off and start again."""
        ever_connected = False
        while not self._stop.is_set():
            try:
                conn = self._connect()
            except Exception as e:
                self._failed(f"connect: {e}")
                continue
            if ever_connected:
                self.reconnects += 1
                log.info("store listener reconnected (%d reconnects)", self.reconnects)
            ever_connected = True
            self.connected = True
            self.next_delay_s = self._backoff[0]
            lost: Exception | None = None
            try:
                self._catch_up()  # whatever was written while no one listened
                self._listen(conn)
            except Exception as e:
                lost = e
            self.connected = False
            # A dead connection may fail to close; it is gone anyway.
            with contextlib.suppress(Exception):
                conn.close()
            if lost is not None:
                self._failed(f"connection lost: {lost}")

    def _listen(self, conn: NoticeConnection) -> None:
        while not self._stop.is_set():
            got = conn.wait(self._wait_s)
            if not got:
                continue
            # Fold a burst (an ingest commits batch after batch) into one catch-up.
            deadline = self._clock() + self._max_fold_s
            while self._clock() < deadline:
                more = conn.wait(self._settle_s)
                if not more:
                    break
                got = got + more  # never extend a list the connection may keep
            self.notifications += len(got)
            self.last_notification = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            self._catch_up()

    def _catch_up(self) -> None:
        # A failing catch-up is not a lost connection: log it, keep listening (the poll and the
        # next announcement try again).
        try:
            self._on_change()
            self.catch_ups += 1
        except Exception:
            log.exception("catch-up after a store announcement failed")

    def _failed(self, why: str) -> None:
        self.last_error = why
        log.warning(
            "store listener: %s; retrying in %.1f s (the poll covers meanwhile)",
            why,
            self.next_delay_s,
        )
        self._stop.wait(self.next_delay_s)
        self.next_delay_s = min(self.next_delay_s * 2, self._backoff[1])
