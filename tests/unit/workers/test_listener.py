"""The store listener with a fake connection: folding bursts, reconnecting with backoff,
catching up after a reconnect, surviving a failing catch-up."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import pytest

from tastegraph.workers.listener import Listener


class Lost(Exception):
    pass


class FakeConn:
    """Plays a script: each step is a list of payloads ``wait`` returns, or an exception."""

    def __init__(self, script: list[list[str] | Exception], done: threading.Event) -> None:
        self.script = list(script)
        self.done = done
        self.closed = False

    def wait(self, timeout: float) -> list[str]:
        if not self.script:
            self.done.set()
            time.sleep(min(timeout, 0.005))
            return []
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def close(self) -> None:
        self.closed = True


def run_until(listener: Listener, done: threading.Event, timeout: float = 5.0) -> None:
    listener.start()
    assert done.wait(timeout), "the fake connection's script was not played out"
    listener.stop()


def connector(conns: list[FakeConn | Exception], log: list[str]) -> Callable[[], FakeConn]:
    def connect() -> FakeConn:
        step = conns.pop(0) if len(conns) > 1 else conns[0]
        log.append("connect")
        if isinstance(step, Exception):
            raise step
        return step

    return connect


def test_a_burst_is_folded_into_one_catch_up() -> None:
    done = threading.Event()
    conn = FakeConn([[], ["changes"], ["changes"], ["events", "kv"], [], [], ["changes"]], done)
    calls: list[str] = []
    listener = Listener(connector([conn], []), lambda: calls.append("x"), wait_s=0.01)
    run_until(listener, done)
    # once on connecting, once for the burst of three waits, once for the later one
    assert len(calls) == 3
    assert listener.notifications == 5
    assert listener.last_notification is not None
    assert listener.state()["connected"] is False  # stopped
    assert conn.closed


def test_a_steady_stream_still_catches_up_every_max_fold() -> None:
    done = threading.Event()
    now = [0.0]

    def clock() -> float:
        now[0] += 0.1  # each reading: another 100 ms of announcements
        return now[0]

    conn = FakeConn([["changes"]] * 12, done)
    calls: list[int] = []
    listener = Listener(
        connector([conn], []), lambda: calls.append(1), wait_s=0.01, max_fold_s=0.3, clock=clock
    )
    run_until(listener, done)
    assert listener.notifications == 12
    assert len(calls) >= 1 + 3  # not one catch-up at the very end of the stream


def test_a_lost_connection_reconnects_with_backoff_and_catches_up() -> None:
    done = threading.Event()
    first = FakeConn([["changes"], [], Lost("terminating connection")], threading.Event())
    second = FakeConn([[]], done)
    log: list[str] = []
    calls: list[int] = []
    listener = Listener(
        connector([first, Lost("refused"), Lost("refused"), second], log),
        lambda: calls.append(1),
        wait_s=0.01,
        backoff_s=(0.01, 0.03),
    )
    t0 = time.monotonic()
    run_until(listener, done)
    assert log == ["connect"] * 4
    assert first.closed
    assert listener.reconnects == 1  # connections made after the first, not attempts
    # on the first connect, the announcement, and once on reconnecting (missed ones)
    assert len(calls) == 3
    assert "refused" in (listener.last_error or "")
    # waited 0.01 after the loss, 0.02 and 0.03 (capped) after the refusals
    assert time.monotonic() - t0 >= 0.05
    assert listener.next_delay_s == 0.01  # reset once connected again


def test_backoff_doubles_up_to_the_cap() -> None:
    done = threading.Event()
    attempts: list[float] = []

    def connect() -> FakeConn:
        attempts.append(time.monotonic())
        if len(attempts) >= 5:
            done.set()
        raise Lost("refused")

    listener = Listener(connect, lambda: None, backoff_s=(0.01, 0.04))
    run_until(listener, done)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.01 and gaps[1] >= 0.02 and gaps[2] >= 0.04 and gaps[3] >= 0.04
    assert listener.connected is False and listener.reconnects == 0


def test_a_failing_catch_up_keeps_the_connection() -> None:
    done = threading.Event()
    conn = FakeConn([["changes"], [], ["changes"]], done)
    log: list[str] = []
    outcomes = iter([None, RuntimeError("engine busy"), None])

    def on_change() -> None:
        err = next(outcomes)
        if err is not None:
            raise err

    listener = Listener(connector([conn], log), on_change, wait_s=0.01, settle_s=0.0)
    run_until(listener, done)
    assert log == ["connect"]  # no reconnect for a catch-up that failed
    assert listener.catch_ups == 2 and listener.reconnects == 0


def test_stop_ends_the_thread_while_waiting() -> None:
    done = threading.Event()
    listener = Listener(connector([FakeConn([], done)], []), lambda: None, wait_s=0.01)
    run_until(listener, done)
    assert listener._thread is not None and not listener._thread.is_alive()


def test_state_says_disconnected_while_backing_off() -> None:
    lost = threading.Event()
    conn = FakeConn([Lost("terminated")], threading.Event())
    orig_close = conn.close

    def close() -> None:
        orig_close()
        lost.set()

    conn.close = close  # type: ignore[method-assign]
    listener = Listener(connector([conn], []), lambda: None, backoff_s=(5.0, 5.0))
    listener.start()
    try:
        assert lost.wait(5.0)
        time.sleep(0.05)  # well inside the 5 s backoff
        assert listener.state()["connected"] is False
        assert "terminated" in (listener.state()["last_error"] or "")
    finally:
        listener.stop()


@pytest.mark.parametrize("backoff", [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_bad_backoff_is_refused(backoff: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="backoff_s"):
        Listener(lambda: FakeConn([], threading.Event()), lambda: None, backoff_s=backoff)
