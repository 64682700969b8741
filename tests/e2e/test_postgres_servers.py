"""Two real ``tastegraph serve`` processes over one PostgreSQL store, as on two machines (each
its own data dir for local files, one ``TASTEGRAPH_STORE_URL``): a client hopping between them
reads its own writes; a CLI ingest is served by both within a second; an idle process hears it
through NOTIFY long before its (60 s) poll; a listener whose backend is terminated reconnects
and catches up with what was written while it was down, with no request prompting it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tastegraph.store import open_store
from tastegraph.store.postgresql import LISTENER_NAME
from tests.conftest import MODEL_CACHE
from tests.e2e.proxies import haproxy, nginx
from tests.e2e.replicas import (
    COLOURS,
    PER_COLOUR,
    assert_hides_hop,
    assert_served_within,
    editor_headers,
    feed,
    new_user,
    two_servers,
)
from tests.e2e.servers import Served, cli, free_port
from tests.fixtures import write_images
from tests.postgres import Server as PostgresServer

pytestmark = pytest.mark.slow

RETRY_S = 2.0  # the listener's first reconnect delay here: a window to write in while it is down


def _data_dir(root: Path, name: str) -> Path:
    d = root / name
    d.mkdir()
    (d / "models").symlink_to(MODEL_CACHE, target_is_directory=True)
    return d


@pytest.fixture(scope="module")
def store_url(postgres: PostgresServer) -> Iterator[str]:
    url = postgres.fresh_database()
    yield url
    postgres.drop(url)


@pytest.fixture(scope="module")
def env(store_url: str) -> dict[str, str]:
    return {
        "TASTEGRAPH_STORE_URL": store_url,
        "TASTEGRAPH_API_CATCHUP_POLL_S": "60",  # so only NOTIFY (or a request) catches up
        "TASTEGRAPH_API_LISTENER_RETRY_S": str(RETRY_S),
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    root = tmp_path_factory.mktemp("pg-servers")
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    write_images(root / "imgs", COLOURS, PER_COLOUR, seed=0)
    cli_data = _data_dir(root, "cli")
    r = cli(cli_data, "ingest", str(root / "imgs"), "--json", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["added"] == len(COLOURS) * PER_COLOUR
    return root


@pytest.fixture(scope="module")
def servers(root: Path, env: dict[str, str]) -> Iterator[tuple[Served, Served]]:
    with two_servers(_data_dir(root, "a"), _data_dir(root, "b"), env) as both:
        yield both


@pytest.fixture(scope="module")
def editor(store_url: str, servers: tuple[Served, Served]) -> dict[str, str]:
    return editor_headers(store_url)


def ready(server: Served) -> dict[str, Any]:
    """The process's own account (``/ready`` never catches up itself)."""
    checks: dict[str, Any] = httpx.get(f"{server.base}/ready", timeout=10).json()["checks"]
    return checks


def until(cond: Callable[[], bool], within: float) -> float:
    """Seconds until ``cond()`` held; fails after ``within``."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < within, f"not within {within} s"
        time.sleep(0.02)
    return time.monotonic() - t0


def ingest_more(root: Path, env: dict[str, str], name: str, seed: int) -> tuple[set[int], int]:
    """Three new pins by the CLI (its own data dir); their ids and the change log's tip."""
    store = open_store(env["TASTEGRAPH_STORE_URL"])
    before = store.log_tips()[0]
    write_images(root / name, {"yellow": (220, 210, 20)}, 3, seed=seed)
    r = cli(root / "cli", "ingest", str(root / name), "--json", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["added"] == 3
    tip, added, _ = store.changes_since(before)
    store.close()
    return set(added), tip


def test_both_listen(servers: tuple[Served, Served]) -> None:
    for s in servers:
        until(lambda s=s: ready(s)["listener"]["connected"], 10)


def test_a_hide_sent_to_one_is_honoured_by_the_others_next_feed(
    servers: tuple[Served, Served], editor: dict[str, str]
) -> None:
    assert_hides_hop(servers, editor, 100)


def test_a_cli_ingest_is_served_by_both_within_a_second(
    root: Path, env: dict[str, str], servers: tuple[Served, Served]
) -> None:
    new, _ = ingest_more(root, env, "more", seed=1)
    assert_served_within(servers, new, 1.0)


def test_an_idle_process_hears_an_ingest_through_notify(
    root: Path, env: dict[str, str], servers: tuple[Served, Served]
) -> None:
    heard = [ready(s)["listener"]["notifications"] for s in servers]
    new, tip = ingest_more(root, env, "idle", seed=2)
    assert len(new) == 3
    for s, n in zip(servers, heard, strict=True):
        took = until(lambda s=s: ready(s)["indexes"]["image"]["watermark"] >= tip, 5)
        assert took < 5 < 60  # well before the poll
        assert ready(s)["listener"]["notifications"] > n


def _terminate_listeners(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :n AND datname = current_database()"
                ),
                {"n": LISTENER_NAME},
            ).all()
        return len(rows)
    finally:
        engine.dispose()


def test_a_killed_listener_reconnects_and_catches_up(
    store_url: str, servers: tuple[Served, Served], editor: dict[str, str]
) -> None:
    a, b = servers
    uid = new_user(a, editor, "while-down")
    pin = feed(a, uid)[0]["pin"]["id"]
    before = ready(b)["listener"]["reconnects"]
    assert _terminate_listeners(store_url) == 2  # one per process
    until(lambda: not ready(b)["listener"]["connected"], RETRY_S / 2)
    # Written through the other process while b's listener is down: announced to no one there.
    ev = {"user_id": uid, "pin_id": pin, "type": "hide", "ts": time.time()}
    r = httpx.post(f"{a.base}/events", json={"events": [ev]}, headers=editor, timeout=30)
    assert r.json()["accepted"] == 1, r.text
    store = open_store(store_url)
    event_tip = store.log_tips()[1]
    store.close()
    assert not ready(b)["listener"]["connected"]  # still down: the write fell in the gap
    assert ready(b)["feeds_details"]["events_applied_to"] < event_tip

    until(lambda: ready(b)["listener"]["reconnects"] == before + 1, RETRY_S + 10)
    until(lambda: ready(b)["feeds_details"]["events_applied_to"] >= event_tip, 5)
    assert ready(b)["listener"]["connected"]
    assert pin not in {x["pin"]["id"] for x in feed(b, uid, 60)}


def _upstreams(servers: tuple[Served, Served]) -> tuple[list[str], str]:
    """Both servers, and a third that is down (nothing listens there)."""
    dead = f"127.0.0.1:{free_port()}"
    return [s.base.removeprefix("http://") for s in servers] + [dead], dead


def test_the_documented_nginx_config_fronts_both_and_routes_around_a_dead_one(
    tmp_path: Path, servers: tuple[Served, Served], editor: dict[str, str]
) -> None:
    upstreams, dead = _upstreams(servers)
    with nginx(upstreams, tmp_path) as proxy:
        # Through the proxy each request lands on whichever server nginx picks: a client
        # there still reads its own hides every time.
        assert_hides_hop((proxy, proxy), editor, 30, handle="behind-nginx")
        tried = proxy.tried()
        assert set(upstreams) - {dead} <= {t[-1] for t in tried}  # both answered
        assert [t for t in tried if t[0] == dead], "nginx never tried the dead upstream"
        assert dead not in {t[-1] for t in tried}
        assert proxy.statuses() <= {"200", "201"}  # no 502 from the dead one reached a client


def test_the_documented_haproxy_config_fronts_both_and_routes_around_a_dead_one(
    tmp_path: Path, servers: tuple[Served, Served], editor: dict[str, str]
) -> None:
    upstreams, _ = _upstreams(servers)
    with haproxy(upstreams, tmp_path) as proxy:
        # From its first request on, before the /ready check has marked the dead one down.
        answered = []
        for _ in range(12):
            r = httpx.get(f"{proxy.base}/health", timeout=10)
            assert r.status_code == 200, r.text
            answered.append(r.headers["x-upstream"])
        assert_hides_hop((proxy, proxy), editor, 30, handle="behind-haproxy")
        assert {"tg1", "tg2"} <= set(answered) and "tg3" not in answered
