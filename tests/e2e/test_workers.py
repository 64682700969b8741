"""Several real server processes over one data dir (SQLite), each a full replica: a client that
hops between them reads its own writes (hides, saves), and a CLI ingest reaches all of them
within a second. And ``tastegraph serve --workers 2`` serves on one port and stops on Ctrl-C."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import MODEL_CACHE
from tests.e2e.servers import Served, cli, start, stop, wait_ready

pytestmark = pytest.mark.slow

COLOURS = {"red": (210, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 210)}
PER_COLOUR = 40


def write_images(folder: Path, colours: dict[str, tuple[int, int, int]], n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name, rgb in colours.items():
        for i in range(n):
            arr = np.clip(np.array(rgb) + rng.normal(0, 18, (48, 64, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "PNG")
            (folder / f"{name}-{i:02d}.png").write_bytes(buf.getvalue())


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
    a, b = start(data), start(data)
    try:
        wait_ready(a)
        wait_ready(b)
        yield a, b
    finally:
        stop(a)
        stop(b)


@pytest.fixture(scope="module")
def editor(data: Path, servers: tuple[Served, Served]) -> dict[str, str]:
    from tastegraph.store import open_store

    store = open_store(f"sqlite:///{data / 'tastegraph.db'}")
    _, secret = store.create_token("ed", "editor")
    store.close()
    return {"Authorization": f"Bearer {secret}"}


def colour_of(pin: dict) -> str:  # type: ignore[type-arg]
    return Path(pin["source"]).name.split("-")[0]


def feed(server: Served, uid: int, n: int = 25) -> list[dict]:  # type: ignore[type-arg]
    r = httpx.get(f"{server.base}/users/{uid}/feed", params={"n": n}, timeout=30)
    assert r.status_code == 200, r.text
    return list(r.json()["results"])


def new_user(server: Served, editor: dict[str, str], handle: str) -> int:
    r = httpx.post(f"{server.base}/users", json={"handle": handle}, headers=editor, timeout=30)
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


def test_a_hide_sent_to_one_is_honoured_by_the_others_next_feed(
    servers: tuple[Served, Served], editor: dict[str, str]
) -> None:
    a, b = servers
    uid = new_user(a, editor, "hopper")
    hidden: set[int] = set()
    for i in range(100):
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
    assert len(hidden) == 100


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
    done = time.monotonic()
    new = set(range(len(COLOURS) * PER_COLOUR + 1, len(COLOURS) * PER_COLOUR + 4))
    for server in servers:
        while True:
            sim = httpx.get(f"{server.base}/pins/{min(new)}/similar", params={"limit": 5})
            rel = httpx.get(f"{server.base}/pins/{min(new)}/related", params={"n": 5})
            if sim.status_code == rel.status_code == 200 and all(
                new & {x["pin"]["id"] for x in page.json()["results"]} for page in (sim, rel)
            ):
                break
            assert time.monotonic() - done < 1.0, (server.base, sim.text[:300], rel.text[:300])
            time.sleep(0.02)


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
