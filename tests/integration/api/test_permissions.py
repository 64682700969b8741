"""Every route under every kind of caller, checked against the permission table
(tastegraph.access): a route that declares no permission fails here, and so does one whose
answer disagrees with the table. Requests are harmless by construction: unknown ids (999999) and
empty bodies, so an allowed caller gets 404/422 and a refused one 401/403 before anything runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tastegraph.access import PERMISSIONS, PUBLIC, ROLE_PERMISSIONS, allowed, markdown
from tastegraph.api import create_api
from tastegraph.api.auth import api_routes, permission_of
from tastegraph.app import App, build
from tastegraph.domain import ROLES
from tastegraph.settings import Settings
from tastegraph.settings.limits import LimitsSettings
from tests.fakes import fake_encoders

UNKNOWN_ID = "999999"


# What each route must need, written out here rather than read back from the routes: a route
# added without a line here, or declaring another permission, fails.
EXPECTED: dict[tuple[str, str], str] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/pins"): "pins:read",
    ("GET", "/pins/{pin_id:int}"): "pins:read",
    ("GET", "/pins/{pin_id:int}/thumbnail"): "pins:read",
    ("POST", "/pins"): "pins:write",
    ("POST", "/pins/upload"): "pins:write",
    ("PATCH", "/pins/{pin_id:int}"): "pins:write",
    ("DELETE", "/pins/{pin_id:int}"): "pins:write",
    ("GET", "/search"): "pins:read",
    ("GET", "/pins/{pin_id:int}/similar"): "pins:read",
    ("POST", "/search/image"): "pins:read",
    ("GET", "/duplicates"): "pins:read",
    ("GET", "/pins/{pin_id:int}/related"): "pins:read",
    ("GET", "/quarantine"): "quarantine:read",
    ("GET", "/tokens"): "tokens:manage",
    ("POST", "/tokens"): "tokens:manage",
    ("DELETE", "/tokens/{token_id:int}"): "tokens:manage",
    ("GET", "/audit"): "audit:read",
    ("POST", "/users"): "users:write",
    ("GET", "/users/{user_id:int}"): "users:read",
    ("GET", "/users/{user_id:int}/export"): "users:export",
    ("DELETE", "/users/{user_id:int}"): "users:delete",
    ("POST", "/users/{user_id:int}/boards"): "boards:write",
    ("GET", "/boards/{board_id:int}"): "boards:read",
    ("POST", "/boards/{board_id:int}/pins"): "boards:write",
    ("POST", "/events"): "events:write",
    ("POST", "/events/query"): "events:read",
    ("POST", "/events/delete"): "events:delete",
    ("GET", "/users/{user_id:int}/feed"): "feeds:read",
}


@pytest.fixture(params=[True, False], ids=["anonymous-read-on", "anonymous-read-off"])
def app(settings: Settings, request: pytest.FixtureRequest) -> Iterator[App]:
    api = settings.api.model_copy(update={"allow_anonymous_read": request.param})
    limits = LimitsSettings(enabled=False)  # this calls every route many times: test_rate_limits
    app = build(
        settings.model_copy(update={"api": api, "limits": limits}), encoders=fake_encoders()
    )
    yield app
    app.close()


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with TestClient(create_api(app)) as c:
        yield c


def routes(client: TestClient) -> list[APIRoute]:
    found = api_routes(client.app)  # type: ignore[arg-type]
    assert len(found) > 25  # every router's, not only the app's own
    return found


def call(client: TestClient, route: APIRoute, method: str, headers: dict[str, str]) -> Any:
    path = re.sub(r"\{[^}]+\}", UNKNOWN_ID, route.path)
    body: dict[str, Any] = {}
    if method in ("POST", "PATCH", "PUT"):
        body = {"data": {"x": "y"}} if path.endswith(("/upload", "/image")) else {"json": {}}
    return client.request(method, path, headers=headers, **body)


def callers(app: App) -> dict[str, tuple[str | None, dict[str, str]]]:
    """name -> (the role the table should judge it by, its headers); None: anonymous."""
    out: dict[str, tuple[str | None, dict[str, str]]] = {"anonymous": (None, {})}
    for role in ROLES:
        _, secret = app.store.create_token(f"t-{role}", role)
        out[role] = (role, {"Authorization": f"Bearer {secret}"})
    info, secret = app.store.create_token("gone", "admin")
    app.store.revoke_token(info.id)
    out["revoked admin"] = (None, {"Authorization": f"Bearer {secret}"})
    out["unknown token"] = (None, {"Authorization": "Bearer tg_not-a-token"})
    return out


def test_every_route_declares_the_permission_this_test_expects(client: TestClient) -> None:
    declared = {(m, r.path): permission_of(r) for r in routes(client) for m in r.methods}
    missing = sorted(k for k, v in declared.items() if v is None)
    assert not missing, f"routes without a permission (use api.auth.needs): {missing}"
    assert declared == EXPECTED


def test_every_route_answers_every_caller_as_the_table_says(client: TestClient, app: App) -> None:
    anonymous_read = app.settings.api.allow_anonymous_read
    wrong = []
    for name, (role, headers) in callers(app).items():
        for route in routes(client):
            for method in sorted(route.methods):
                perm = EXPECTED[(method, route.path)]
                r = call(client, route, method, headers)
                may = allowed(role, perm, anonymous_read=anonymous_read)
                bad_credentials = name in ("revoked admin", "unknown token")
                if bad_credentials and perm != PUBLIC:
                    expect = {401}  # a bad token is refused even where anyone may read
                elif may:
                    expect = set(range(200, 600)) - {401, 403}
                else:
                    expect = {401} if role is None else {403}
                if r.status_code not in expect:
                    wrong.append(f"{name}: {method} {route.path} ({perm}) -> {r.status_code}")
                elif r.status_code in (401, 403):
                    assert r.json()["error"]["message"], r.text
    assert not wrong, "\n".join(wrong)


def test_a_refusal_names_the_permission_and_who_has_it(client: TestClient, app: App) -> None:
    _, secret = app.store.create_token("v", "viewer")
    r = client.delete(f"/pins/{UNKNOWN_ID}", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 403
    msg = r.json()["error"]["message"]
    assert "'pins:write'" in msg and "editor" in msg and "'viewer'" in msg
    r = client.delete(f"/pins/{UNKNOWN_ID}")
    assert r.status_code == 401
    err = r.json()["error"]
    assert "'pins:write'" in err["message"] and "--role editor" in err["hint"]


def test_a_public_route_ignores_credentials_even_malformed_ones(client: TestClient) -> None:
    for path in ("/health", "/ready", "/"):
        r = client.get(path, headers={"Authorization": "Basic nonsense"})
        assert r.status_code in (200, 503), (path, r.text)
    assert client.get("/pins", headers={"Authorization": "Basic nonsense"}).status_code == 401


def test_the_openapi_document_says_what_each_operation_needs(client: TestClient) -> None:
    ops = [
        op for item in client.get("/openapi.json").json()["paths"].values() for op in item.values()
    ]
    assert ops and all(op.get("x-permission") in {*PERMISSIONS, PUBLIC} for op in ops)
    delete = client.get("/openapi.json").json()["paths"]["/pins/{pin_id}"]["delete"]
    assert delete["x-permission"] == "pins:write" and "Needs `pins:write`" in delete["description"]


def test_the_table_admin_holds_everything_and_docs_print_it() -> None:
    assert ROLE_PERMISSIONS["admin"] == frozenset(PERMISSIONS)
    assert ROLE_PERMISSIONS["viewer"] < ROLE_PERMISSIONS["editor"] < ROLE_PERMISSIONS["admin"]
    doc = Path(__file__).resolve().parents[3] / "docs" / "permissions.md"
    assert markdown() in doc.read_text(), "paste `tastegraph.access.markdown()` into the doc"


def test_the_first_app_a_process_makes_documents_its_permissions_too(tmp_path: Path) -> None:
    # The routers are module globals: a fix that only worked from the second app on (as one
    # did) passes every in-process test above. A fresh interpreter makes exactly one.
    code = (
        "import pathlib, sys; from tastegraph.api import create_api; "
        "from tastegraph.app import build; from tastegraph.settings import Settings; "
        "from tests.fakes import fake_encoders; "
        "app = build(Settings(data_dir=pathlib.Path(sys.argv[1])), encoders=fake_encoders()); "
        "doc = create_api(app).openapi(); "
        "ops = [op for item in doc['paths'].values() for op in item.values()]; "
        "print(sum('x-permission' in op for op in ops), len(ops))"
    )
    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "src"), str(repo)])}
    r = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "data")],
        capture_output=True, text=True, env=env, cwd=repo, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    documented, total = map(int, r.stdout.split())
    assert documented == total > 25
