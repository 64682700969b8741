"""Which ingest runs are still alive: each records its process (pid, host) and a heartbeat.

A run killed outright (SIGKILL, a power cut) never reaches its ``finally`` and would stay
``running`` forever. Every later ingest first looks at the runs marked running: one whose
process is gone from this host, or whose heartbeat stopped (any host, and a pid the system has
since given to another process), is marked ``interrupted``; the new run resumes its work, since
finished sources are skipped by reference.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass

from tastegraph.store import SQLStore

__all__ = ["Heartbeat", "InterruptedRun", "is_dead", "owner", "reap_interrupted"]

# A live run beats at least this often (every committed batch, and a timer between them);
# one silent for STALE_S is taken for dead even when its pid exists (pid reuse, other host).
BEAT_S = 5.0
STALE_S = 120.0

_KEY = "ingest_run_owner:"


@dataclass(frozen=True)
class InterruptedRun:
    run_id: str
    source: str
    started_at: str


def owner() -> dict[str, object]:
    """This process, as a run records it."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "heartbeat": time.time()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    return True


def is_dead(record: dict[str, object] | None, *, now: float, started: float) -> bool:
    """Whether the run whose owner ``record`` this is has no process working on it any more.

    ``record`` None: a run from before owners were recorded, dead once older than STALE_S.
    """
    if not isinstance(record, dict):
        return now - started > STALE_S
    try:
        beat = float(record.get("heartbeat", 0.0))  # type: ignore[arg-type]
        pid = int(record.get("pid", 0))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return True
    if now - beat > STALE_S:
        return True
    if record.get("host") == socket.gethostname() and pid != os.getpid():
        return not _pid_alive(pid)
    return False  # another host's run with a fresh heartbeat, or one of this process's


def _parse_time(iso: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0


def reap_interrupted(store: SQLStore) -> list[InterruptedRun]:
    """Mark the runs left ``running`` by a dead process ``interrupted``; returns them."""
    now = time.time()
    dead = [
        InterruptedRun(run_id, source, started_at)
        for run_id, source, started_at in store.running_runs()
        if is_dead(store.get_kv(_KEY + run_id), now=now, started=_parse_time(started_at))
    ]
    if dead:
        ids = [run.run_id for run in dead]
        store.interrupt_runs(ids, forget=[_KEY + i for i in ids])
    return dead


class Heartbeat:
    """Records this process as the owner of ``run_id`` and keeps its heartbeat fresh.

    A daemon thread beats every BEAT_S, so a run stuck in one long step (a model export) is
    not taken for dead; :meth:`stop` removes the record once the run's status is final.
    """

    def __init__(self, store: SQLStore, run_id: str) -> None:
        self._store = store
        self._key = _KEY + run_id
        self._stop = threading.Event()
        self.beat()
        self._thread = threading.Thread(target=self._loop, name="tastegraph-heartbeat", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        self._store.set_kv(self._key, owner())

    def _loop(self) -> None:
        while not self._stop.wait(BEAT_S):
            try:
                self.beat()
            except Exception:  # a busy store delays a beat; STALE_S allows for many misses
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        # Best effort: should the store refuse, the record stops beating and goes stale within
        # STALE_S, and the run's own error (if any) is the one worth raising.
        with contextlib.suppress(Exception):
            self._store.delete_kv(self._key)
