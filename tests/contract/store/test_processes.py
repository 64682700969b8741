"""Several processes on one store, each opening it by URL (spawned, as separate servers would):
appends to the logs commit in id order, and content-hash and idempotency-key dedupe hold
across writers.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tastegraph.engagement.bus import EventBus
from tastegraph.engagement.service import EngagementService
from tastegraph.settings import Settings
from tastegraph.store import NewPin, open_store
from tastegraph.store.ports import Store
from tests.postgres import Server as PostgresServer

REPETITIONS = 20
BATCHES = 6  # per writer and repetition
CTX = mp.get_context("spawn")


def _pin(key: str) -> NewPin:
    return NewPin(
        content_hash=f"{key:0>64}"[-64:],
        source=f"{key}.jpg",
        vectors={"image": ("m@1", np.ones(4, np.float32))},
        title=f"pin {key}",
    )


def _event(key: str) -> dict[str, Any]:
    return {"key": key, "user_id": 1, "pin_id": 1, "kind": "click", "ts": 10.0}


# ------------------------------------------------------------------ what the children run
def _append(url: str, log: str, writer: int, barrier: Barrier) -> None:
    store = open_store(url)
    try:
        for rep in range(REPETITIONS):
            barrier.wait()
            for b in range(BATCHES):
                key = f"{writer}-{rep}-{b}"
                if log == "events":
                    store.add_events([_event(f"{key}-{i}") for i in range(3)])
                else:
                    store.add_pins([_pin(f"{key}-{i}") for i in range(3)])
            barrier.wait()
    finally:
        store.close()


def _add_pins(url: str, keys: list[str]) -> list[tuple[int, bool]]:
    store = open_store(url)
    try:
        out: list[tuple[int, bool]] = []
        for start in range(0, len(keys), 4):
            out.extend(store.add_pins([_pin(k) for k in keys[start : start + 4]]))
        return out
    finally:
        store.close()


def _import(url: str, path: str, data_dir: str) -> dict[str, Any]:
    store = open_store(url)
    try:
        service = EngagementService(store, Settings(data_dir=Path(data_dir)), EventBus())
        return service.import_file(Path(path), progress=False)
    finally:
        store.close()


def _run_all(target: Callable[..., Any], args: list[tuple[Any, ...]]) -> list[Any]:
    with CTX.Pool(len(args)) as pool:
        return [r.get(timeout=300) for r in [pool.apply_async(target, a) for a in args]]


# ---------------------------------------------------------------------------- the tests
def _tail(store: Store, log: str, last: int) -> tuple[int, list[int]]:
    if log == "events":
        rows = store.events_since(last)
        return (rows[-1]["id"] if rows else last), [int(r["id"]) for r in rows]
    seq, ups, _ = store.changes_since(last)
    return seq, ups


def _all(store: Store, log: str) -> set[int]:
    if log == "events":
        return {int(r["id"]) for r in store.events_since(0)}
    return {int(i) for i in store.get_vectors("image")[0]}


@pytest.mark.parametrize("log", ["events", "changes"])
def test_overlapping_writers_and_a_tailer_miss_nothing(backend_url: str, log: str) -> None:
    store = open_store(backend_url)
    barrier = CTX.Barrier(3)
    writers = [CTX.Process(target=_append, args=(backend_url, log, w, barrier)) for w in (0, 1)]
    for p in writers:
        p.start()
    seen: set[int] = set()
    last, clean = 0, 0
    try:
        for _ in range(REPETITIONS):
            barrier.wait(timeout=120)  # both writers start appending now
            while True:  # tail while they write, as a serving process does
                last, ids = _tail(store, log, last)
                seen.update(ids)
                if not ids and barrier.n_waiting == 2:
                    break
            barrier.wait(timeout=120)
            last, ids = _tail(store, log, last)
            seen.update(ids)
            clean += seen == _all(store, log)
    finally:
        for p in writers:
            p.join(timeout=120)
        store.close()
    assert [p.exitcode for p in writers] == [0, 0]
    assert clean == REPETITIONS
    assert len(seen) == REPETITIONS * 2 * BATCHES * 3


def test_two_processes_adding_overlapping_pins_end_with_each_image_once(backend_url: str) -> None:
    open_store(backend_url).close()
    shared = [f"shared{i}" for i in range(10)]
    # 40 each: 30 of their own and the 10 shared ones, which they reach in opposite orders
    a = [f"a{i}" for i in range(15)] + shared + [f"a{i}" for i in range(15, 30)]
    b = [f"b{i}" for i in range(15)] + shared[::-1] + [f"b{i}" for i in range(15, 30)]
    got_a, got_b = _run_all(_add_pins, [(backend_url, a), (backend_url, b)])
    store = open_store(backend_url)
    try:
        assert store.count_pins() == 70
        ids_a, ids_b = dict(zip(a, got_a, strict=True)), dict(zip(b, got_b, strict=True))
        assert all(ids_a[k][0] == ids_b[k][0] for k in shared)
        # each shared image was created by exactly one of them
        assert all(ids_a[k][1] != ids_b[k][1] for k in shared)
        assert store.get_vectors("image")[0].size == 70
        assert len(store.changes_since(0)[1]) == 70
    finally:
        store.close()


def test_two_processes_importing_overlapping_event_files_store_each_key_once(
    backend_url: str, tmp_path: Path
) -> None:
    store = open_store(backend_url)
    store.create_user("ann")
    store.add_pins([_pin("p")])
    store.close()
    files = []
    for name, keys in (("a", range(0, 60)), ("b", range(30, 90))):
        path = tmp_path / f"{name}.jsonl"
        rows = [
            {
                "user_id": 1,
                "pin_id": 1,
                "type": "click",
                "ts": 1.7e9 + k,
                "idempotency_key": f"k{k}",
            }
            for k in keys
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        files.append(path)
    results = _run_all(
        _import, [(backend_url, str(p), str(tmp_path / f"data{i}")) for i, p in enumerate(files)]
    )
    assert sum(r["accepted"] for r in results) == 90
    assert sum(r["duplicates"] for r in results) == 30
    store = open_store(backend_url)
    try:
        keys = [r["key"] for r in store.events_since(0)]
        assert len(keys) == len(set(keys)) == 90
    finally:
        store.close()


def _open_and_count(url: str) -> int:
    store = open_store(url)
    try:
        return store.count_pins()
    finally:
        store.close()


def test_processes_opening_a_new_postgresql_database_at_once_all_succeed(
    postgres: PostgresServer,
) -> None:
    url = postgres.fresh_database(migrated=False)
    try:
        assert _run_all(_open_and_count, [(url,)] * 3) == [0, 0, 0]
    finally:
        postgres.drop(url)
