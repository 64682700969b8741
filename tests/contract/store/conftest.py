"""The store backends every contract test runs on, and a fresh store of each."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tastegraph.store import open_store
from tastegraph.store.ports import Store

# backend name -> the URL of a fresh, empty store (a file under a temporary folder, or a new
# database on the test PostgreSQL server: the ``postgres_url`` fixture)
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": lambda _request, tmp: f"sqlite:///{tmp / 'x.db'}",
    "postgresql": lambda request, _tmp: str(request.getfixturevalue("postgres_url")),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def store(backend_url: str) -> Iterator[Store]:
    s: Store = open_store(backend_url)
    yield s
    s.close()
