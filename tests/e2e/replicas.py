"""What the several-server tests share: the catalog they ingest, two running servers, and the
two checks every replica setup must pass (a client hopping between servers reads its own hides;
a CLI ingest is served by every server within a second)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tastegraph.store import open_store
from tests.e2e.servers import Served, start, stop, wait_ready

COLOURS = {"red": (210, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 210)}
PER_COLOUR = 40


@contextmanager
def two_servers(
    data_a: Path, data_b: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[Served, Served]]:
    a = start(data_a, env=env)
    b = start(data_b, env=env)
    try:
        wait_ready(a)
        wait_ready(b)
        yield a, b
    finally:
        stop(a)
        stop(b)


def editor_headers(store_url: str) -> dict[str, str]:
    store = open_store(store_url)
    _, secret = store.create_token("ed", "editor")
    store.close()
    return {"Authorization": f"Bearer {secret}"}


def feed(server: Served, uid: int, n: int = 25) -> list[dict]:  # type: ignore[type-arg]
    r = httpx.get(f"{server.base}/users/{uid}/feed", params={"n": n}, timeout=30)
    assert r.status_code == 200, r.text
    return list(r.json()["results"])


def new_user(server: Served, editor: dict[str, str], handle: str) -> int:
    r = httpx.post(f"{server.base}/users", json={"handle": handle}, headers=editor, timeout=30)
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


def assert_hides_hop(
    servers: tuple[Served, Served], editor: dict[str, str], n: int = 100, handle: str = "hopper"
) -> None:
    """``n`` hides by a new user ``handle``, each sent to one server and honoured by the other's
    next feed."""
    a, b = servers
    uid = new_user(a, editor, handle)
    hidden: set[int] = set()
    for i in range(n):
        # Hop both ways: write to one process, read the next feed from the other.
        writer, reader = (a, b) if i % 2 == 0 else (b, a)
        shown = [x["pin"]["id"] for x in feed(reader, uid)]
        assert not hidden & set(shown), (i, hidden & set(shown))
        pin = shown[0]  # the reader was about to serve it first: a distinct pin every time
        ev = {"user_id": uid, "pin_id": pin, "type": "hide", "ts": time.time()}
        r = httpx.post(f"{writer.base}/events", json={"events": [ev]}, headers=editor, timeout=30)
        assert r.json()["accepted"] == 1, r.text
        hidden.add(pin)
        after = {x["pin"]["id"] for x in feed(reader, uid)}
        assert pin not in after, f"hide {i} of pin {pin} sent to {writer.base} not honoured"
    assert len(hidden) == n


def assert_served_within(servers: tuple[Served, ...], new: set[int], seconds: float) -> None:
    """Every server finds the new pins by similarity and serves them as related pins within
    ``seconds`` of now (call it as soon as the ingest returned)."""
    done = time.monotonic()
    for server in servers:
        while True:
            sim = httpx.get(f"{server.base}/pins/{min(new)}/similar", params={"limit": 5})
            rel = httpx.get(f"{server.base}/pins/{min(new)}/related", params={"n": 5})
            if sim.status_code == rel.status_code == 200 and all(
                new & {x["pin"]["id"] for x in page.json()["results"]} for page in (sim, rel)
            ):
                break
            assert time.monotonic() - done < seconds, (
                server.base,
                sim.text[:300],
                rel.text[:300],
            )
            time.sleep(0.02)
