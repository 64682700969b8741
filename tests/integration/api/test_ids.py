"""Every id the API takes is typed (issue 15, defect 3), and no request can break the next one.

Ids outside what a row can have (zero, negative, past 2**53) answer 422 (or 404 when they are not
digits at all, so no route has such a path), ids that could exist but do not answer 404, both in
the one error shape; never 500.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tastegraph.api import create_api
from tastegraph.api.models import MAX_ID
from tastegraph.app import App

# A body each route accepts, so the id is the only thing that can be wrong.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/pins/{pin_id}"): {"link": "https://example.com"},
    ("POST", "/users/{user_id}/boards"): {"name": "new board"},
    ("POST", "/boards/{board_id}/pins"): {"pin_id": 1},
}
IDS = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=MAX_ID + 1),
    st.integers(min_value=10**6, max_value=MAX_ID),  # could exist, does not
    st.sampled_from([0, -1, MAX_ID, MAX_ID + 1, 2**63 - 1, 2**63, 2**64, 10**23, -(2**63) - 1]),
)


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def api(fake_app: App) -> Iterator[tuple[TestClient, dict[str, str]]]:
    from tastegraph.catalog.sources import SourceItem

    item = SourceItem(ref="a.jpg", title="a")
    fake_app.catalog.ingest_items([item], source_label="t", progress=False, data={"a.jpg": _jpeg()})
    user = fake_app.store.create_user("ann")
    fake_app.store.create_board(user["id"], "b")
    _, secret = fake_app.store.create_token("admin", "admin")
    with TestClient(create_api(fake_app)) as c:
        yield c, {"Authorization": f"Bearer {secret}"}


def id_routes(client: TestClient) -> list[tuple[str, str, list[str]]]:
    """(method, path template, its id parameters) of every documented route with an id."""
    out = []
    for path, ops in client.get("/openapi.json").json()["paths"].items():
        params = re.findall(r"{(\w+_id)}", path)
        if params:
            out.extend((m.upper(), path, params) for m in sorted(ops))
    return out


def assert_error(r: Any, statuses: tuple[int, ...]) -> None:
    assert r.status_code in statuses, (r.request.method, r.request.url, r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] and err["message"]


def test_every_id_route_is_covered(api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api
    routes = {(m, p) for m, p, _ in id_routes(client)}
    for expected in [("GET", "/pins/{pin_id}"), ("GET", "/pins/{pin_id}/similar"),
                     ("GET", "/pins/{pin_id}/related"), ("GET", "/pins/{pin_id}/thumbnail"),
                     ("GET", "/users/{user_id}"), ("GET", "/users/{user_id}/feed"),
                     ("GET", "/boards/{board_id}"), ("POST", "/boards/{board_id}/pins"),
                     ("DELETE", "/tokens/{token_id}"), ("DELETE", "/pins/{pin_id}")]:  # fmt: skip
        assert expected in routes


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_id_in_a_path_answers_404_or_422(
    api: tuple[TestClient, dict[str, str]], data: st.DataObject
) -> None:
    client, auth = api
    method, path, params = data.draw(st.sampled_from(id_routes(client)))
    value = data.draw(IDS)
    url = path
    for p in params:
        url = url.replace("{" + p + "}", str(value))
    r = client.request(method, url, headers=auth, json=BODIES.get((method, path)))
    # A negative number matches no route (ids are digits): 404 too.
    assert_error(r, (404,) if 1 <= value <= MAX_ID else (404, 422))
    assert client.get("/health").status_code == 200  # the connection still serves


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=IDS)
def test_any_id_in_a_body_answers_per_row_or_422(
    api: tuple[TestClient, dict[str, str]], value: int
) -> None:
    client, auth = api
    r = client.post("/boards/1/pins", headers=auth, json={"pin_id": value})
    assert_error(r, (404,) if 1 <= value <= MAX_ID else (422,))
    # Events are judged row by row: a bad id rejects its row, the rest of the batch is kept.
    good = {"user_id": 1, "pin_id": 1, "kind": "click", "ts": "2024-01-02T03:04:05Z"}
    rows = [{**good, "user_id": value}, {**good, "pin_id": value}, good]
    r = client.post("/events", headers=auth, json={"events": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rejected"] == 2 and {e["row"] for e in body["errors"]} == {0, 1}
    assert body["accepted"] + body["duplicates"] == 1


@pytest.mark.parametrize("raw", ["1e999", "-1e999", "1e308", "99999999999999999999999"])
def test_event_ids_no_number_type_can_hold(
    api: tuple[TestClient, dict[str, str]], raw: str
) -> None:
    client, auth = api
    body = '{"events":[{"user_id":' + raw + ',"pin_id":1,"kind":"click","ts":1704164645}]}'
    r = client.post("/events", headers={**auth, "content-type": "application/json"}, content=body)
    assert r.status_code == 200 and r.json()["rejected"] == 1, r.text


def test_unexpected_error_is_a_clean_500_and_the_next_request_works(
    api: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, auth = api
    tg = client.app.state.tg  # type: ignore[attr-defined]

    def broken(_: int) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tg.store, "get_pin", broken)
    # TestClient re-raises whatever escapes the app: a response here means nothing escaped.
    r = client.get("/pins/1", headers=auth)
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal"
    assert "disk on fire" not in r.text
    monkeypatch.undo()
    assert client.get("/pins/1", headers=auth).status_code == 200


def test_revoking_a_missing_token_is_404_and_twice_is_409(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = api
    assert_error(client.delete("/tokens/424242", headers=auth), (404,))
    made = client.post("/tokens", headers=auth, json={"name": "x", "role": "viewer"}).json()
    assert client.delete(f"/tokens/{made['id']}", headers=auth).status_code == 204
    assert_error(client.delete(f"/tokens/{made['id']}", headers=auth), (409,))


def test_unsupported_methods_answer_405_with_allow(api: tuple[TestClient, dict[str, str]]) -> None:
    """Issue 15 defect 9: TRACE (and any method a path lacks) is 405 with the path's methods."""
    client, auth = api
    doc = client.get("/openapi.json").json()
    for template, ops in doc["paths"].items():
        path = re.sub(r"{\w+}", "1", template)
        documented = {m.upper() for m in ops}
        for method in ("TRACE", *({"GET", "POST", "PATCH", "DELETE", "PUT"} - documented)):
            r = client.request(method, path, headers=auth)
            assert r.status_code == 405, (method, path, r.status_code)
            assert set(r.headers["allow"].split(", ")) == documented, (method, path)
            assert r.json()["error"]["code"] == "method_not_allowed"
