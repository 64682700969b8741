"""The fair gate: at most ``slots`` holders, waiters admitted in arrival order."""

from __future__ import annotations

import threading
import time

import pytest

from tastegraph.feed.gate import FairGate


def _wait_until(cond: object, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < end, "timed out"
        time.sleep(0.001)


def test_waiters_enter_in_arrival_order() -> None:
    gate = FairGate(1)
    order: list[int] = []
    gate.acquire()
    threads = []
    for i in range(6):
        t = threading.Thread(target=lambda i=i: (gate.acquire(), order.append(i), gate.release()))
        t.start()
        threads.append(t)
        _wait_until(lambda i=i: gate.waiting == i + 1)
    gate.release()
    for t in threads:
        t.join(5)
    assert order == list(range(6))
    assert gate.waiting == 0


def test_at_most_slots_holders_at_once() -> None:
    gate = FairGate(2)
    inside = 0
    most = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(50):
            with gate:
                with lock:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0002)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most == 2


def test_slots_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FairGate(0)
