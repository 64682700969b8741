"""Bad event times and ids never get in; admins find and delete events (audited, feeds forget
them at once and after a restart); repeats are kept; the last admin token stays."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from tastegraph.app import App, build
from tastegraph.cli import app as cli
from tastegraph.errors import InvalidInput


@pytest.fixture
def world(fake_app: App, tmp_path: Path) -> App:
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k, rgb in enumerate(((210, 30, 30), (30, 190, 40), (30, 40, 210))):
        for i in range(5):
            arr = np.clip(np.array(rgb) + rng.normal(0, 18, (40, 48, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "PNG")
            (folder / f"{k}-{i}.png").write_bytes(buf.getvalue())
    assert fake_app.catalog.ingest(str(folder), progress=False).added == 15
    fake_app.store.create_user("ann")
    return fake_app


@pytest.fixture
def admin(world: App) -> dict[str, str]:
    _, secret = world.store.create_token("root", "admin")
    return {"Authorization": f"Bearer {secret}"}


def _pins(app: App) -> list[int]:
    return [p.id for p in app.store.list_pins(limit=100)]


def _raw_event(user: int, pin: int, ts: float, key: str, **kw: Any) -> dict[str, Any]:
    """A row as the store holds it, written past the parser (as older versions let in)."""
    row = {"key": key, "user_id": user, "pin_id": pin, "kind": "click", "ts": ts, "dwell_ms": 0.0}
    return {**row, "surface": "", "position": None, "request_id": "", **kw}


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_post_events_rejects_bad_times_and_ids_row_by_row(
    client: tuple[TestClient, dict[str, str]], world: App
) -> None:
    c, h = client
    pin = _pins(world)[0]
    now = time.time()
    ok = {"user_id": 1, "pin_id": pin, "type": "click"}
    rows = [
        {**ok, "ts": now},
        {**ok, "ts": int(now * 1e6)},  # microseconds: recognised, not a date in year 56000
        {**ok, "ts": "2099-01-01T00:00:00Z"},
        {**ok, "ts": 1e300},
        {**ok, "ts": now + 3600},
        {**ok, "ts": now, "user_id": 99999999999999999999999},
        {**ok, "ts": now, "user_id": 1e300},
        {**ok, "ts": now, "pin_id": -1},
        {**ok, "ts": now, "position": 2**40},
        {**ok, "ts": now, "dwell_ms": 1e300},
        {**ok, "ts": now, "surface": "\ud800"},
    ]
    # As JSON text: the test client cannot encode the lone surrogate, a raw client can.
    body_text = json.dumps({"events": rows})
    r = c.post("/events", content=body_text, headers={**h, "content-type": "application/json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 9)
    msgs = {e["row"]: e["message"] for e in body["errors"]}
    assert "'2099-01-01T00:00:00Z' is 2099-01-01T00:00:00Z, after the latest accepted" in msgs[2]
    assert "1e+300" in msgs[3] and "too large" in msgs[3]
    assert "after the latest" in msgs[4] and "2000-01-01T00:00:00Z to " in msgs[4]
    assert all("user_id must be an integer from 1 to" in msgs[i] for i in (5, 6))
    assert "pin_id" in msgs[7] and "position" in msgs[8] and "dwell_ms" in msgs[9]
    assert "surface" in msgs[10]
    stored = sorted(e["ts"] for e in world.store.events_since(0))
    assert stored == pytest.approx([now, now], abs=1e-3)
    assert c.get("/users/1/feed").status_code == 200


def test_bad_times_are_rejected_by_the_file_import_too(world: App, tmp_path: Path) -> None:
    f = tmp_path / "ev.csv"
    pin = _pins(world)[0]
    f.write_text(
        "user_id,pin_id,type,ts\n"
        f"1,{pin},click,{int(time.time())}\n"
        f"1,{pin},click,4102444800\n"  # 2100 in seconds
        f"1,{pin},click,1e300\n"
        f"99999999999999999999999,{pin},click,{int(time.time())}\n"
    )
    res = world.engagement.import_file(f, progress=False)
    assert (res["accepted"], res["rejected"]) == (1, 3)
    assert [e["row"] for e in res["errors"]] == [3, 4, 5]


def test_save_with_a_time_outside_the_window_saves_nothing(world: App) -> None:
    uid = 1
    board = world.store.create_board(uid, "b")["id"]
    with pytest.raises(InvalidInput, match="after the latest"):
        world.engagement.save(uid, board, _pins(world)[0], ts=4_102_444_800.0)
    assert world.store.get_board(board)["pins"] == []


def test_identical_clicks_in_one_batch_are_two_events_and_a_retry_adds_none(
    client: tuple[TestClient, dict[str, str]], world: App, tmp_path: Path
) -> None:
    c, h = client
    pin = _pins(world)[0]
    click = {"user_id": 1, "pin_id": pin, "type": "click", "ts": int(time.time())}
    r = c.post("/events", json={"events": [click, click]}, headers=h).json()
    assert (r["accepted"], r["duplicates"]) == (2, 0)  # a double click
    r = c.post("/events", json={"events": [click, click]}, headers=h).json()
    assert (r["accepted"], r["duplicates"]) == (0, 2)  # the same batch again: a retry
    r = c.post("/events", json={"events": [click, click, click]}, headers=h).json()
    assert (r["accepted"], r["duplicates"]) == (1, 2)  # one more real click
    f = tmp_path / "ev.csv"
    f.write_text(f"user_id,pin_id,type,ts\n1,{pin},save,1714557600\n1,{pin},save,1714557600\n")
    assert world.engagement.import_file(f, progress=False)["accepted"] == 2
    again = world.engagement.import_file(f, progress=False)
    assert (again["accepted"], again["duplicates"]) == (0, 2)
    assert world.store.count_events() == 5


def test_admin_finds_and_deletes_events_stored_before_the_window_existed(
    client: tuple[TestClient, dict[str, str]], world: App, admin: dict[str, str]
) -> None:
    c, editor = client
    pins = _pins(world)
    now = time.time()
    world.store.add_events(
        [
            _raw_event(1, pins[0], now - 60, "good-1"),
            _raw_event(1, pins[1], 1e297, "far-1"),  # 1e300 ms, as older versions stored it
            _raw_event(1, pins[2], 4_070_908_800.0, "far-2"),  # 2099
            _raw_event(1, pins[3], now - 30, "odd-pos", position=2**40),
        ]
    )
    q = c.post("/events/query", json={"future": True}, headers=admin).json()
    assert q["matched"] == 2 and {e["key"] for e in q["events"]} == {"far-1", "far-2"}
    bad = c.post("/events/query", json={"invalid": True}, headers=admin).json()
    assert bad["matched"] == 3
    assert c.post("/events/query", json={"future": True}, headers=editor).status_code == 403
    # an empty filter is refused, in the one error shape; "all" only alone
    r = c.post("/events/delete", json={}, headers=admin)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"
    assert "no event filter" in r.json()["error"]["message"]
    assert c.post("/events/delete", json={"all": True, "user_id": 1}, headers=admin).status_code
    assert c.post("/events/delete", json={"future": True}, headers=editor).status_code == 403
    # Strictly typed: on a deletion `true` is not user 1, nor is 1 or "yes" "all".
    for body in ({"user_id": 2**64}, {"user_id": True}, {"all": 1}, {"future": "yes"}):
        assert c.post("/events/delete", json=body, headers=admin).status_code == 422, body
    dry = c.post("/events/delete", json={"invalid": True, "dry_run": True}, headers=admin).json()
    assert (dry["matched"], dry["deleted"], dry["dry_run"]) == (3, 0, True)
    assert world.store.count_events() == 4
    done = c.post("/events/delete", json={"invalid": True}, headers=admin).json()
    assert (done["deleted"], done["dry_run"]) == (3, False)
    assert [e["key"] for e in world.store.events_since(0)] == ["good-1"]
    # audited: who, which filter, how many
    entry = next(a for a in world.store.audit_entries() if a["action"] == "delete_events")
    target = json.loads(entry["target"])
    assert entry["role"] == "admin" and entry["token_id"] is not None
    assert target["filter"] == {"invalid": True} and target["deleted"] == 3
    # a copy of the rows, in the import format, keys kept
    kept = [json.loads(x) for x in Path(done["saved_to"]).read_text().splitlines()]
    assert sorted(k["idempotency_key"] for k in kept) == ["far-1", "far-2", "odd-pos"]
    assert c.get("/users/1/feed").status_code == 200
    # a restart reads the log as it is now
    again = build(world.settings)
    try:
        assert again.store.count_events() == 1
    finally:
        again.store.close()


def test_feeds_forget_deleted_events_here_and_in_other_processes(
    client: tuple[TestClient, dict[str, str]], world: App, admin: dict[str, str]
) -> None:
    c, h = client
    hide = {"user_id": 1, "type": "hide", "ts": time.time()}

    def feed() -> list[int]:
        return [x["pin"]["id"] for x in c.get("/users/1/feed", params={"n": 15}).json()["results"]]

    hidden = feed()[0]
    assert c.post("/events", json={"events": [{**hide, "pin_id": hidden}]}, headers=h).json()[
        "accepted"
    ]
    assert hidden not in feed()
    r = c.post("/events/delete", json={"user_id": 1, "kind": "hide"}, headers=admin).json()
    assert r["deleted"] == 1
    assert hidden in feed()  # this process: at once
    # Another process (`tastegraph events delete` while the server runs) deletes a hide: the
    # server's periodic catch-up notices the new event generation and rebuilds.
    hidden = feed()[0]
    c.post("/events", json={"events": [{**hide, "pin_id": hidden}]}, headers=h)
    # A newer event stays: the log's tip does not move, so no read-time catch-up is triggered.
    click = {**hide, "type": "click", "pin_id": feed()[1]}
    c.post("/events", json={"events": [click]}, headers=h)
    assert hidden not in feed()
    data = str(world.settings.data_dir)
    r2 = _invoke("events", "delete", "--data", data, "--kind", "hide", "--json")
    assert r2.exit_code == 0, r2.output
    assert json.loads(r2.stdout)["deleted"] == 1
    assert hidden not in feed()  # not yet noticed...
    assert world.catchup.run().get("events_deleted") == 1
    assert hidden in feed()  # ...and forgotten after the catch-up
    assert world.catchup.run().get("events_deleted") is None


def test_cli_lists_and_deletes_events(world: App) -> None:
    pins = _pins(world)
    now = time.time()
    world.store.add_events(
        [
            _raw_event(1, pins[0], now - 60, "good-1"),
            _raw_event(1, pins[1], 1e297, "far-1"),
            _raw_event(1, pins[2], 4_070_908_800.0, "far-2"),
        ]
    )
    data = str(world.settings.data_dir)
    stats = _invoke("events", "list", "--data", data, "--json")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.stdout)["future"] == 2
    found = _invoke("events", "list", "--data", data, "--future", "--json")
    assert {e["key"] for e in json.loads(found.stdout)["events"]} == {"far-1", "far-2"}
    table = _invoke("events", "list", "--data", data, "--before", "2030-01-01", "--id-range", "1-9")
    assert table.exit_code == 0 and "good-1" in table.stdout and "far-1" not in table.stdout
    r = _invoke("events", "delete", "--data", data)
    assert r.exit_code == 1 and "no event filter" in r.output
    for bad in ("x", "3", "-", "1-2-3", "a-5", "\u00b2-5"):
        r = _invoke("events", "delete", "--data", data, "--id-range", bad)
        assert r.exit_code == 1 and "--id-range" in r.output, bad
    for ids, keys in (("2-", {"far-1", "far-2"}), ("-1", {"good-1"}), ("2-2", {"far-1"})):
        r = _invoke("events", "list", "--data", data, "--id-range", ids, "--json")
        assert {e["key"] for e in json.loads(r.stdout)["events"]} == keys, ids
    r = _invoke("events", "delete", "--data", data, "--all", "--user", "1")
    assert r.exit_code == 1 and "alone" in r.output
    r = _invoke("events", "delete", "--data", data, "--future", "--dry-run")
    assert r.exit_code == 0 and "2 events would be deleted" in r.output
    assert world.store.count_events() == 3
    r = _invoke("events", "delete", "--data", data, "--future", "--json")
    res = json.loads(r.stdout)
    assert res["deleted"] == 2 and world.store.count_events() == 1
    entry = next(a for a in world.store.audit_entries() if a["action"] == "delete_events")
    assert entry["role"] == "local" and json.loads(entry["target"])["by"].startswith("cli:")
    # The copy can be imported back: its far-future rows are refused as any new ones are.
    back = _invoke("events", "import", res["saved_to"], "--data", data, "--json", "--no-progress")
    assert back.exit_code == 3 and json.loads(back.stdout)["rejected"] == 2
    r = _invoke("events", "delete", "--data", data, "--all")
    assert r.exit_code == 0 and world.store.count_events() == 0
    # Messages quote what was sent, markup-like text included, and print it as it is.
    f = Path(data) / "odd.csv"
    f.write_text(f"user_id,pin_id,type,ts\n1,{pins[0]},[/],{int(now)}\n")
    r = _invoke("events", "import", str(f), "--data", data, "--no-progress")
    assert r.exit_code == 3 and "unknown event type '[/]'" in r.output


def test_the_last_admin_token_cannot_be_revoked(world: App) -> None:
    from tastegraph.api import create_api

    first, secret = world.store.create_token("root", "admin")
    h = {"Authorization": f"Bearer {secret}"}
    editor, _ = world.store.create_token("ed", "editor")
    with TestClient(create_api(world)) as c:
        r = c.delete(f"/tokens/{first.id}", headers=h)
        assert r.status_code == 409, r.text
        err = r.json()["error"]
        assert err["code"] == "conflict" and "last active admin token" in err["message"]
        assert "token create --role admin" in err["hint"]
        assert c.delete(f"/tokens/{editor.id}", headers=h).status_code == 204
        second, secret2 = world.store.create_token("root2", "admin")
        assert c.delete(f"/tokens/{first.id}", headers=h).status_code == 204  # another remains
        h2 = {"Authorization": f"Bearer {secret2}"}
        assert c.delete(f"/tokens/{second.id}", headers=h2).status_code == 409
    data = str(world.settings.data_dir)
    r = _invoke("token", "revoke", str(second.id), "--data", data)
    assert r.exit_code == 1 and "last active admin token" in r.output
    assert world.store.verify_token(secret2) is not None
    r = _invoke("token", "revoke", str(second.id), "--data", data, "--force")
    assert r.exit_code == 0, r.output
    assert world.store.verify_token(secret2) is None


def test_any_event_batch_is_answered_row_by_row_never_with_a_server_error(world: App) -> None:
    """Fuzz ``POST /events`` with JSON-ish values in every field (as raw JSON text, so lone
    surrogates, NaN and Infinity arrive as a hostile client sends them)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tastegraph.api import create_api
    from tests.unit.engagement.test_events import FIELDS, JSONISH

    _, secret = world.store.create_token("ed", "editor")
    h = {"Authorization": f"Bearer {secret}", "content-type": "application/json"}
    pin = _pins(world)[0]
    base = {"user_id": 1, "pin_id": pin, "type": "click", "ts": time.time()}
    row = st.builds(lambda f, v: {**base, f: v}, st.sampled_from(FIELDS), JSONISH)

    with TestClient(create_api(world), raise_server_exceptions=False) as c:

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(rows=st.lists(row | st.dictionaries(st.sampled_from(FIELDS), JSONISH), max_size=6))
        def check(rows: list[dict[str, Any]]) -> None:
            r = c.post("/events", content=json.dumps({"events": rows}), headers=h)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["accepted"] + body["duplicates"] + body["rejected"] == len(rows)
            assert {e["row"] for e in body["errors"]} <= set(range(len(rows)))

        check()
        window = world.engagement.window()
        assert all(window.min_ts <= e["ts"] <= window.max_ts for e in world.store.events_since(0))
        assert c.get("/users/1/feed").status_code == 200
