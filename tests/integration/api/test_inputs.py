"""What the OpenAPI document accepts, the server accepts (issue 15, defect 9).

The document's patterns are checked by clients in JSON Schema's regex dialect, by pydantic in
Rust's, and the store strips with Python's ``str.strip``: these disagree on what ``\\s`` means,
so a handle of "\\x1c" or "\\x85" once passed one and failed another. Each property below draws
from the document's own pattern.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tastegraph.api import create_api
from tastegraph.api.models import NAME_PATTERN, WORDS_PATTERN
from tastegraph.app import App

names = st.from_regex(NAME_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 64)


@pytest.fixture
def api(fake_app: App) -> Iterator[tuple[TestClient, dict[str, str]]]:
    _, secret = fake_app.store.create_token("admin", "admin")
    with TestClient(create_api(fake_app)) as c:
        yield c, {"Authorization": f"Bearer {secret}"}


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(handle=names, board=names)
def test_names_the_document_allows_are_accepted(
    api: tuple[TestClient, dict[str, str]], handle: str, board: str
) -> None:
    client, auth = api
    r = client.post("/users", headers=auth, json={"handle": handle})
    assert r.status_code in (201, 409), r.text
    user = r.json().get("id") or r.json()["error"]["details"]["user_id"]
    r = client.post(f"/users/{user}/boards", headers=auth, json={"name": board})
    assert r.status_code in (201, 409), r.text
    if r.status_code == 201:
        assert r.json()["name"] == board  # stored as sent: nothing stripped


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(max_size=8))
def test_what_the_server_refuses_the_document_refuses(
    api: tuple[TestClient, dict[str, str]], text: str
) -> None:
    """Names with nothing left after stripping, or with control characters, and queries with
    nothing left after stripping, are refused by the document itself (pattern: 422 from
    validation, with the failing field named), never accepted by it and refused later."""
    client, auth = api
    r = client.post("/users", headers=auth, json={"handle": text})
    if not text.strip() or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text):
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["loc"] == ["body", "handle"]
    r = client.get("/search", headers=auth, params={"q": text})
    if not text.strip():
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["loc"] == ["query", "q"]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(q=st.from_regex(WORDS_PATTERN).filter(lambda s: 0 < len(s) <= 1000))
def test_queries_the_document_allows_are_answered(
    api: tuple[TestClient, dict[str, str]], q: str
) -> None:
    client, auth = api
    r = client.get("/search", headers=auth, params={"q": q})
    assert r.status_code == 200, r.text
