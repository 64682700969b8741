"""Fixtures shared by the engagement and feed API tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tastegraph.api import create_api
from tastegraph.app import App


@pytest.fixture
def client(world: App) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """An in-process API over the test module's ``world`` app, and an editor's auth header
    (test_api.py has its own ``client``)."""
    _, secret = world.store.create_token("ed", "editor")
    with TestClient(create_api(world)) as c:
        yield c, {"Authorization": f"Bearer {secret}"}
