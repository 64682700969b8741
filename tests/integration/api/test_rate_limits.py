"""Rate limits in process: routes that enumerate count per caller (admins too), bad credentials
lock an address out, every refusal is a 429 with Retry-After in the one error shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tastegraph.api import create_api
from tastegraph.api.auth import api_routes, enumerates
from tastegraph.app import App, build
from tastegraph.settings import Settings
from tastegraph.settings.limits import LimitsSettings
from tests.fakes import fake_encoders

# The routes that list or search: each call counts against the caller's `limits.enumerate`.
ENUMERATING = {
    ("GET", "/pins"),
    ("GET", "/search"),
    ("GET", "/duplicates"),
    ("GET", "/users/{user_id:int}"),
    ("GET", "/boards/{board_id:int}"),
    ("GET", "/tokens"),
    ("GET", "/audit"),
    ("GET", "/quarantine"),
    ("POST", "/events/query"),
}


def _app(settings: Settings, **limits: object) -> App:
    return build(
        settings.model_copy(update={"limits": LimitsSettings(**limits)}),  # type: ignore[arg-type]
        encoders=fake_encoders(),
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    app = _app(settings, enumerate="3/minute", auth_failures="2/minute; 3/hour")
    yield app
    app.close()


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with TestClient(create_api(app)) as c:
        yield c


def bearer(app: App, role: str) -> dict[str, str]:
    _, secret = app.store.create_token(f"t-{role}-{id(app)}", role)
    return {"Authorization": f"Bearer {secret}"}


def assert_limited(r: object, phrase: str) -> None:
    assert r.status_code == 429, r.text  # type: ignore[attr-defined]
    assert 1 <= int(r.headers["retry-after"]) <= 3600  # type: ignore[attr-defined]
    err = r.json()["error"]  # type: ignore[attr-defined]
    assert err["code"] == "rate_limited" and phrase in err["message"] and err["hint"]


def test_exactly_the_listing_routes_count(client: TestClient) -> None:
    counted = {(m, r.path) for r in api_routes(client.app) for m in r.methods if enumerates(r)}  # type: ignore[arg-type]
    assert counted == ENUMERATING


def test_a_caller_over_the_enumeration_limit_gets_429_others_do_not(
    client: TestClient, app: App
) -> None:
    admin, other = bearer(app, "admin"), bearer(app, "viewer")
    for _ in range(3):
        assert client.get("/pins", headers=admin).status_code == 200
    assert_limited(client.get("/search", params={"q": "red"}, headers=admin), "3 per minute")
    assert_limited(client.get("/audit", headers=admin), "per caller")  # admins are not exempt
    assert client.get("/pins", headers=other).status_code == 200  # another token: its own count
    assert client.get("/pins").status_code == 200  # no token: counted by address
    assert client.get("/pins/999999", headers=admin).status_code == 404  # not a listing route


def test_callers_without_a_token_share_their_address_count(client: TestClient) -> None:
    for _ in range(3):
        assert client.get("/pins").status_code == 200
    assert_limited(client.get("/pins"), "per caller")


def test_bad_credentials_lock_the_address_out_then_back_off(client: TestClient, app: App) -> None:
    good = bearer(app, "viewer")
    for bad in ({"Authorization": "Bearer tg_guess-1"}, {"Authorization": "Basic x"}):
        assert client.get("/pins/1", headers=bad).status_code == 401
    # Two failures in the minute: even the right token is refused from this address now.
    r = client.get("/pins/1", headers=good)
    assert_limited(r, "failed credentials")
    assert int(r.headers["retry-after"]) <= 60
    assert client.get("/health", headers=good).status_code == 200  # public routes never look
    assert client.get("/pins").status_code == 200  # and no credentials, no lockout


def test_limits_can_be_turned_off(settings: Settings) -> None:
    app = _app(settings, enabled=False, enumerate="1/minute", auth_failures="1/minute")
    try:
        with TestClient(create_api(app)) as c:
            assert all(c.get("/pins").status_code == 200 for _ in range(5))
            for _ in range(3):
                assert c.get("/pins", headers={"Authorization": "Bearer nope"}).status_code == 401
    finally:
        app.close()


@pytest.mark.parametrize("bad", ["lots", "5/fortnight", ""])
def test_a_rate_that_is_not_one_is_refused_with_an_example(bad: str) -> None:
    with pytest.raises(ValueError, match=r"write e\.g\. '300/minute'"):
        LimitsSettings(enumerate=bad)
