"""Users, boards, saves and events: bad rows rejected one by one, good rows never lost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tastegraph.app import App
from tastegraph.store import NewPin


@pytest.fixture
def world(fake_app: App) -> App:
    pins = [
        NewPin(
            content_hash=f"{i:064d}",
            source=f"p{i}",
            vectors={"image": ("m", np.ones(4, np.float32))},
        )
        for i in range(3)
    ]
    fake_app.store.add_pins(pins)
    fake_app.store.create_user("ann")
    return fake_app


def test_users_boards_saves(client: tuple[TestClient, dict[str, str]], world: App) -> None:
    c, h = client
    assert c.post("/users", json={"handle": "bob"}).status_code == 401
    bob = c.post("/users", json={"handle": "bob", "name": "Bob"}, headers=h).json()
    assert c.post("/users", json={"handle": "bob"}, headers=h).json()["error"]["code"] == "conflict"
    board = c.post(f"/users/{bob['id']}/boards", json={"name": "Boots"}, headers=h).json()
    r = c.post(f"/boards/{board['id']}/pins", json={"pin_id": 2}, headers=h).json()
    assert r["new"] is True
    assert (
        c.post(f"/boards/{board['id']}/pins", json={"pin_id": 2}, headers=h).json()["new"] is False
    )
    assert c.post(f"/boards/{board['id']}/pins", json={"pin_id": 99}, headers=h).status_code == 404
    assert c.get(f"/boards/{board['id']}").json()["pins"] == [2]
    assert c.get(f"/users/{bob['id']}").json()["boards"][0]["name"] == "Boots"
    assert c.get("/users/999").status_code == 404
    # the save is also an engagement event, logged once
    saves = [e for e in world.store.events_since(0) if e["kind"] == "save"]
    assert [(e["user_id"], e["pin_id"]) for e in saves] == [(bob["id"], 2)]


def test_event_batch_rejects_bad_rows_keeps_good(
    client: tuple[TestClient, dict[str, str]], world: App
) -> None:
    c, h = client
    first = {"user_id": 1, "pin_id": 1, "type": "impression", "ts": "2024-05-01T10:00:00Z"}
    events = [
        {**first, "position": 3, "request_id": "r1"},
        {"user_id": 1, "pin_id": 2, "type": "dwell", "ts": 1714557600, "dwell_ms": 5300},
        {"user_id": 7, "pin_id": 1, "type": "click", "ts": 1714557600},
        {"user_id": 1, "pin_id": 70, "type": "click", "ts": 1714557600},
        {"user_id": 1, "pin_id": 1, "type": "like", "ts": 1714557600},
        {"user_id": 1, "pin_id": 1, "type": "click", "ts": "yesterday"},
        {"user_id": 1, "pin_id": 1, "type": "dwell", "ts": 1714557600, "dwell_ms": -5},
        {"user_id": 1, "pin_id": 3, "type": "save", "ts": 1714557601000, "idempotency_key": "k-1"},
    ]  # fmt: skip
    r = c.post("/events", json={"events": events}, headers=h).json()
    assert (r["accepted"], r["duplicates"], r["rejected"]) == (3, 0, 5)
    msgs = {e["row"]: e["message"] for e in r["errors"]}
    assert "unknown user 7" in msgs[2] and "unknown pin 70" in msgs[3]
    assert "unknown event type" in msgs[4] and "bad time" in msgs[5] and "dwell_ms" in msgs[6]
    # resending the same batch (a retry) adds nothing
    r = c.post("/events", json={"events": events}, headers=h).json()
    assert (r["accepted"], r["duplicates"]) == (0, 3)
    stored = world.store.events_since(0)
    assert len(stored) == 3
    assert stored[2]["ts"] == pytest.approx(1714557601.0)  # milliseconds recognised
    assert c.post("/events", json={"events": events}).status_code == 401
    assert c.post("/events", json={"nope": []}, headers=h).status_code == 422


def test_import_file_csv_and_jsonl(world: App, tmp_path: Path) -> None:
    csv_file = tmp_path / "ev.csv"
    csv_file.write_text(
        "user_id,pin_id,type,ts,dwell_ms\n1,1,click,2024-05-01T10:00:00,\n1,2,dwell,1714557600,1200\n"
        "1,2,oops,1714557600,\n1,2,click,1714557600,,extra\n"
    )
    res = world.engagement.import_file(csv_file, progress=False)
    assert (res["accepted"], res["rejected"]) == (2, 2)
    assert {e["row"] for e in res["errors"]} == {4, 5}
    again = world.engagement.import_file(csv_file, progress=False)
    assert (again["accepted"], again["duplicates"]) == (0, 2)
    jl = tmp_path / "ev.jsonl"
    jl.write_text(
        json.dumps({"user": 1, "pin": 3, "kind": "hide", "timestamp": 1714557700}) + "\n{bad\n[1]\n"
    )
    res = world.engagement.import_file(jl, progress=False)
    assert (res["accepted"], res["rejected"]) == (1, 2)
    assert world.store.count_events() == 3


def test_cli_events_import_exit_status(world: App, tmp_path: Path) -> None:
    from tastegraph.cli import app as cli

    f = tmp_path / "ev.csv"
    f.write_text("user_id,pin_id,type,ts\n1,1,click,1714557600\n1,1,click,never\n")
    data = str(world.settings.data_dir)
    r = CliRunner().invoke(
        cli, ["events", "import", str(f), "--data", data, "--json", "--no-progress"]
    )
    assert r.exit_code == 3, r.output
    assert json.loads(r.stdout)["accepted"] == 1
    r = CliRunner().invoke(cli, ["events", "import", str(tmp_path / "missing.csv"), "--data", data])
    # The console wraps long lines (the path's length varies with the temporary folder).
    assert r.exit_code == 1 and "does not exist" in " ".join(r.output.split())
