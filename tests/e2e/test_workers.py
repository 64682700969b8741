"""Several real server processes over one data dir (SQLite), each a full replica: a client that
hops between them reads its own writes (hides, saves), and a CLI ingest reaches all of them
within a second. And ``tastegraph serve --workers 2`` serves on one port and stops on Ctrl-C."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL_CACHE
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
from tests.e2e.servers import Served, cli, start, stop, wait_ready
from tests.fixtures import write_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workers")
    data = root / "data"
    data.mkdir()
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    (data / "models").symlink_to(MODEL_CACHE, target_is_directory=True)
    write_images(root / "imgs", COLOURS, PER_COLOUR, seed=0)
    r = cli(data, "ingest", str(root / "imgs"), "--json", "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["added"] == len(COLOURS) * PER_COLOUR
    return data


@pytest.fixture(scope="module")
def servers(data: Path) -> Iterator[tuple[Served, Served]]:
    with two_servers(data, data) as both:
        yield both


@pytest.fixture(scope="module")
def editor(data: Path, servers: tuple[Served, Served]) -> dict[str, str]:
    return editor_headers(f"sqlite:///{data / 'tastegraph.db'}")


def colour_of(pin: dict) -> str:  # type: ignore[type-arg]
    return Path(pin["source"]).name.split("-")[0]


def test_a_hide_sent_to_one_is_honoured_by_the_others_next_feed(
    servers: tuple[Served, Served], editor: dict[str, str]
) -> None:
    assert_hides_hop(servers, editor, 100)


def test_a_save_moves_look_alikes_up_on_the_other(
    servers: tuple[Served, Served], editor: dict[str, str]
) -> None:
    a, b = servers
    uid = new_user(a, editor, "saver")
    cold = [colour_of(x["pin"]) for x in feed(b, uid, 15)]
    board = httpx.post(
        f"{a.base}/users/{uid}/boards", json={"name": "reds"}, headers=editor, timeout=30
    ).json()["id"]
    reds = [x["pin"]["id"] for x in feed(a, uid, 60) if colour_of(x["pin"]) == "red"][:3]
    for pid in reds:
        r = httpx.post(
            f"{a.base}/boards/{board}/pins", json={"pin_id": pid}, headers=editor, timeout=30
        )
        assert r.status_code in (200, 201), r.text
    warm = [colour_of(x["pin"]) for x in feed(b, uid, 15)]
    assert warm.count("red") > cold.count("red"), (cold, warm)


def test_a_cli_ingest_is_served_by_both_within_a_second(
    data: Path, servers: tuple[Served, Served], tmp_path: Path
) -> None:
    write_images(tmp_path / "more", {"yellow": (220, 210, 20)}, 3, seed=1)
    before = httpx.get(f"{servers[0].base}/search", params={"q": "x", "limit": 1}, timeout=30)
    assert before.status_code == 200
    r = cli(data, "ingest", str(tmp_path / "more"), "--json", "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    new = set(range(len(COLOURS) * PER_COLOUR + 1, len(COLOURS) * PER_COLOUR + 4))
    assert_served_within(servers, new, 1.0)


def descendants(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [k for c in kids for k in (int(c), *descendants(int(c)))]


def test_serve_with_two_workers_on_one_port_stops_on_ctrl_c(data: Path) -> None:
    server = start(data, "--workers", "2")
    children: list[int] = []
    try:
        wait_ready(server)
        children = descendants(server.proc.pid)
        assert len(children) >= 2, children
        for _ in range(6):  # whichever process answers, it answers
            r = httpx.get(f"{server.base}/pins/1/related", params={"n": 5}, timeout=30)
            assert r.status_code == 200 and r.json()["results"]
    finally:
        code = stop(server)
    assert code == 0
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{c}").exists() for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [c for c in children if Path(f"/proc/{c}").exists()]
