"""``Lazy``: a value made on first use, once, thread-safely; the composition root's building block.

Models and indexes take seconds to load; commands that need neither (tokens, quarantine) must not
pay for them. ``Lazy`` makes the value on the first ``get()`` and says whether it exists yet
(``loaded``, ``peek()``) without making it, for health checks and for catch-up work that only
applies to what is already in memory.

Example
-------
>>> calls = []
>>> lazy = Lazy(lambda: calls.append(1) or "made")
>>> lazy.loaded, lazy.peek()
(False, None)
>>> lazy.get(), lazy.get(), len(calls)
('made', 'made', 1)
>>> lazy.reset()  # dropped: the next get() makes a fresh one
>>> lazy.loaded
False
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["Lazy", "Loaded"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Loaded(Protocol[T_co]):
    """The read-and-drop side of a :class:`Lazy`, for code that works on what is already made
    and never makes it (catch-up)."""

    def peek(self) -> T_co | None: ...

    def reset(self) -> None: ...


class Lazy(Generic[T]):
    """A value made by ``make()`` on the first ``get()``; ``reset()`` drops it."""

    def __init__(self, make: Callable[[], T], lock: threading.RLock | None = None) -> None:
        self._make = make
        self._value: T | None = None
        # One lock may be shared by several: a value made from another (indexes from models)
        # is made under the same lock, so no two threads build either twice.
        self._lock = lock or threading.RLock()

    def get(self) -> T:
        value = self._value
        if value is not None:
            return value
        with self._lock:
            if self._value is None:
                self._value = self._make()
            return self._value

    __call__ = get

    def peek(self) -> T | None:
        """The value if it was made, else None (never makes it)."""
        return self._value

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def set(self, value: T) -> None:
        with self._lock:
            self._value = value

    def reset(self) -> None:
        with self._lock:
            self._value = None
