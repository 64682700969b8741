"""A person's data over the API and the CLI: an admin exports it (audited) or erases it; served
recommendations forget it (related pins return to what they were before the person saved
anything); the kept copies of deleted events are scrubbed; a second erasure is a 404."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tastegraph.api import create_api
from tastegraph.app import App
from tastegraph.cli import app as cli
from tests.fixtures import write_images

COLOURS = {"red": (210, 30, 30), "blue": (30, 40, 210)}


@pytest.fixture
def world(fake_app: App, tmp_path: Path) -> App:
    write_images(tmp_path / "imgs", COLOURS, 5, seed=0)
    assert fake_app.catalog.ingest(str(tmp_path / "imgs"), progress=False).added == 10
    return fake_app


@pytest.fixture
def api(world: App) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    heads = {}
    for role in ("viewer", "editor", "admin"):
        _, secret = world.store.create_token(role, role)
        heads[role] = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_api(world)) as c:
        yield c, heads


def _by_colour(app: App) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for p in app.store.list_pins(limit=100):
        out.setdefault(Path(p.source).name.split("-")[0], []).append(p.id)
    return out


def _co_saver(c: TestClient, editor: dict[str, str], handle: str, pins: list[int]) -> int:
    """A user who saves ``pins`` on one board (each save is also a logged event)."""
    uid = int(c.post("/users", json={"handle": handle}, headers=editor).json()["id"])
    board = c.post(f"/users/{uid}/boards", json={"name": "mix"}, headers=editor).json()["id"]
    for p in pins:
        assert c.post(f"/boards/{board}/pins", json={"pin_id": p}, headers=editor).status_code < 300
    hide = {"user_id": uid, "pin_id": pins[0], "type": "click", "ts": time.time()}
    assert c.post("/events", json={"events": [hide]}, headers=editor).json()["accepted"] == 1
    return uid


def test_an_erasure_takes_the_person_out_of_served_recommendations(
    api: tuple[TestClient, dict[str, dict[str, str]]], world: App
) -> None:
    c, h = api
    pins = _by_colour(world)
    red, blue = pins["red"][0], pins["blue"][0]

    def related() -> list[int]:
        r = c.get(f"/pins/{red}/related", params={"n": 8})
        return [x["pin"]["id"] for x in r.json()["results"]]

    before = related()
    assert blue not in before[:3]  # a blue pin is not like a red one
    users = [_co_saver(c, h["editor"], name, [red, blue]) for name in ("ann", "bob", "cy")]
    assert related()[0] == blue  # saved together three times: now the most related
    for uid in users:
        r = c.delete(f"/users/{uid}", headers=h["admin"])
        assert r.status_code == 200, r.text
        assert {k: r.json()[k] for k in ("boards", "saves", "events")} == {
            "boards": 1,
            "saves": 2,
            "events": 3,
        }
    assert related() == before  # as if they had never been here
    for uid in users:
        assert c.get(f"/users/{uid}", headers=h["admin"]).status_code == 404
        assert c.get(f"/users/{uid}/feed").status_code == 404
    again = c.delete(f"/users/{users[0]}", headers=h["admin"])
    never = c.delete("/users/999999", headers=h["admin"])
    assert again.status_code == never.status_code == 404
    assert again.json()["error"]["message"].replace(str(users[0]), "N") == never.json()["error"][
        "message"
    ].replace("999999", "N")


def test_only_an_admin_exports_or_erases_and_exports_are_audited(
    api: tuple[TestClient, dict[str, dict[str, str]]], world: App
) -> None:
    c, h = api
    pins = _by_colour(world)
    uid = _co_saver(c, h["editor"], "ann", [pins["red"][0], pins["blue"][1]])
    for who, status in ((h["viewer"], 403), (h["editor"], 403), ({}, 401)):
        assert c.get(f"/users/{uid}/export", headers=who).status_code == status
        assert c.delete(f"/users/{uid}", headers=who).status_code == status
    doc = c.get(f"/users/{uid}/export", headers=h["admin"]).json()
    assert doc["format"] == "tastegraph-user-export/1" and doc["user"]["handle"] == "ann"
    assert len(doc["boards"][0]["saves"]) == 2 and len(doc["events"]) == 3
    audit = c.get("/audit", headers=h["admin"]).json()["results"]
    assert any(a["action"] == "export_user" and a["target"] == f"user:{uid}" for a in audit)


def test_erasure_scrubs_the_kept_copies_of_deleted_events(
    api: tuple[TestClient, dict[str, dict[str, str]]], world: App
) -> None:
    c, h = api
    pins = _by_colour(world)
    ann = _co_saver(c, h["editor"], "ann", [pins["red"][0], pins["red"][1]])
    bob = _co_saver(c, h["editor"], "bob", [pins["red"][0], pins["red"][1]])
    # `events delete` keeps a copy of what it deleted (to undo a mistake): ann's and bob's clicks.
    r = c.post("/events/delete", json={"kind": "click"}, headers=h["admin"]).json()
    assert r["deleted"] == 2
    copies = list((world.settings.data_dir / "deleted-events").glob("*.jsonl"))
    rows = [json.loads(line) for f in copies for line in f.read_text().splitlines()]
    assert {row["user_id"] for row in rows} == {ann, bob}
    erased = c.delete(f"/users/{ann}", headers=h["admin"]).json()
    assert erased["event_copies_scrubbed"] == 1
    rows = [json.loads(line) for f in copies for line in f.read_text().splitlines()]
    assert {row["user_id"] for row in rows} == {bob}  # bob's copy is still there


def _invoke(*args: str, stdin: str = "") -> Any:
    return CliRunner().invoke(cli, list(args), input=stdin)


def test_the_cli_exports_then_erases_after_asking(
    api: tuple[TestClient, dict[str, dict[str, str]]], world: App
) -> None:
    c, h = api
    pins = _by_colour(world)
    uid = _co_saver(c, h["editor"], "ann", [pins["blue"][0]])
    data = str(world.settings.data_dir)
    exported = _invoke("users", "export", str(uid), "--data", data)
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["user"]["handle"] == "ann"
    declined = _invoke("users", "delete", str(uid), "--data", data, stdin="n\n")
    assert declined.exit_code == 1 and "nothing erased" in declined.output
    assert world.store.get_user(uid)["handle"] == "ann"
    done = _invoke("users", "delete", str(uid), "--data", data, "--yes", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["boards"] == 1
    gone = _invoke("users", "delete", str(uid), "--data", data, "--yes")
    assert gone.exit_code != 0 and "does not exist" in gone.output
