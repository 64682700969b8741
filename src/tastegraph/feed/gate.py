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

__all__ = ["FairGate"]


class FairGate:
    """At most ``slots`` concurrent holders; the others wait and enter in arrival order."""

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = int(slots)
        self._cond = threading.Condition(threading.Lock())
        self._next = 0  # tickets handed out
        self._done = 0  # holders that left

    @property
    def waiting(self) -> int:
        """Holders and waiters beyond the slots (0 when nobody waits)."""
        return max(self._next - self._done - self.slots, 0)

    def acquire(self) -> None:
        with self._cond:
            ticket = self._next
            self._next += 1
            # Ticket t may enter once all but ``slots - 1`` of the tickets before it have left.
            while ticket >= self._done + self.slots:
                self._cond.wait()

    def release(self) -> None:
        with self._cond:
            self._done += 1
            self._cond.notify_all()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
