"""Secrets never leave: a token's secret appears once, in the answer that created it, and in no
other body, header or log line (valid, wrong, revoked or malformed, on routes that succeed and
routes that fail); a store password is in no error and no command output."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tastegraph.api import create_api
from tastegraph.app import App
from tests.e2e.servers import cli


@pytest.fixture
def client(fake_app: App) -> Iterator[TestClient]:
    fake_app.settings.limits.enabled = False  # this sends many bad tokens: test_rate_limits
    with TestClient(create_api(fake_app)) as c:
        yield c


def test_a_token_secret_is_shown_once_and_never_again(
    client: TestClient, fake_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, root = fake_app.store.create_token("root", "admin")
    admin = {"Authorization": f"Bearer {root}"}
    made = client.post("/tokens", json={"name": "shop", "role": "viewer"}, headers=admin)
    assert made.status_code == 201
    secret = made.json()["token"]
    assert secret and len(secret) >= 32
    viewer = {"Authorization": f"Bearer {secret}"}
    seen = []
    for headers in (
        viewer,
        admin,
        {"Authorization": f"Bearer {secret}x"},
        {"Authorization": secret},
    ):
        for method, path, body in (
            ("GET", "/pins", None),
            ("GET", "/pins/999999", None),
            ("DELETE", "/pins/999999", None),  # 403 for the viewer
            ("POST", "/events", {"events": [{"nonsense": secret}]}),  # 422 that echoes input?
            ("GET", "/tokens", None),
            ("GET", "/audit", None),
            ("GET", "/nothing/here", None),
        ):
            r = client.request(method, path, headers=headers, json=body)
            seen.append(r.text + " ".join(f"{k}: {v}" for k, v in r.headers.items()))
    revoke = client.delete(f"/tokens/{made.json()['id']}", headers=admin)
    assert revoke.status_code == 204
    seen.append(client.get("/pins", headers=viewer).text)  # revoked now
    leaked = [s for s in seen if secret in s or root in s]
    assert not leaked, leaked[:2]
    assert secret not in caplog.text and root not in caplog.text
    listed = client.get("/tokens", headers=admin).json()["results"]
    assert all("token" not in t and "token_hash" not in t for t in listed)


def test_a_store_password_is_in_no_error_or_command_output(tmp_path: Path) -> None:
    # The real console script: a command that leaves a store error to the top level still
    # prints one line and a hint, never a traceback (which would carry the URL's parts).
    env = {"TASTEGRAPH_STORE_URL": "postgresql+psycopg://tg:s3cret-pw@127.0.0.1:1/catalog"}
    for args in (["db", "upgrade"], ["users", "list"], ["token", "list"]):
        r = cli(tmp_path, *args, env=env, timeout=60)
        assert r.returncode == 1, (args, r.stderr)
        assert "s3cret-pw" not in r.stdout + r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and "127.0.0.1" in r.stderr, (args, r.stderr)
