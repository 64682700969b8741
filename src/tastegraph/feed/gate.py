"""A first-come, first-served gate: at most ``slots`` holders at once, waiters admitted in order.

Why: a feed request holds the interpreter (the GIL) for ~75% of its CPU time, in numpy calls too
small to release it for long. Several Python threads serving the engine at once on two cores do
not run faster than one (``bench/bench_feed_threads.py``: 4 threads served 262 requests/s against
303 for one thread, at 4.96 ms of CPU per request against 3.25: the threads hand the GIL back and
forth at every numpy call that releases it). Letting one request at a time into the engine gets
the single-thread throughput back, but :class:`threading.Lock` is not fair: under load one
thread took it again and again while another waited 1.5 s. This gate admits waiters in arrival
order, so a request waits for the ones that came before it and no longer.

Example
-------
>>> gate = FairGate(1)
>>> with gate:
...     gate.waiting
0
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["FairGate"]


class FairGate:
    """At most ``slots`` concurrent holders; the others wait and enter in arrival order.

    A leaving holder hands its slot to the longest waiter and wakes that one only: with many
    waiters, waking them all to re-check (a condition's ``notify_all``) cost each release one
    interpreter hand-off per waiter.
    """

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = int(slots)
        self._lock = threading.Lock()
        self._free = self.slots
        self._waiters: deque[threading.Lock] = deque()

    @property
    def waiting(self) -> int:
        """Holders and waiters beyond the slots (0 when nobody waits)."""
        return len(self._waiters)

    def acquire(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by the holder that hands this waiter its slot

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
