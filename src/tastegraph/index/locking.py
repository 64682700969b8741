"""A readers-writer lock: many searches at once, or one writer."""

from __future__ import annotations

import threading

__all__ = ["RWLock"]

# --------------------------------------------------------------------------------------------
# Readers-writer lock


class RWLock:
    """Many concurrent readers or one writer; waiting writers block new readers (no starvation).

    ``with lock.read():`` / ``with lock.write():``. The guards are plain objects rather than
    ``contextlib`` generators because a search takes the read side on every call.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._read = _ReadGuard(self)
        self._write = _WriteGuard(self)

    def read(self) -> _ReadGuard:
        return self._read

    def write(self) -> _WriteGuard:
        return self._write

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            # Only a writer waits for the readers to drain; waking nobody is the common case.
            if self._readers == 0 and self._writers_waiting:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


class _ReadGuard:
    __slots__ = ("_lock",)

    def __init__(self, lock: RWLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire_read()

    def __exit__(self, *exc: object) -> None:
        self._lock.release_read()


class _WriteGuard:
    __slots__ = ("_lock",)

    def __init__(self, lock: RWLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire_write()

    def __exit__(self, *exc: object) -> None:
        self._lock.release_write()
