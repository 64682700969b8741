"""Shared fixtures: settings in a temp data dir, an App with fake or real encoders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tastegraph.app import App, build
from tastegraph.settings import Settings
from tests.fakes import fake_encoders
from tests.postgres import Server as PostgresServer
from tests.postgres import start_server

REPO = Path(__file__).resolve().parents[1]
EVAL_DATA = Path(os.environ.get("TASTEGRAPH_EVAL_DATA", REPO.parent / "shared" / "data"))
# Real-model exports are cached here across tests (and runs) so each is exported once.
MODEL_CACHE = Path(os.environ.get("TASTEGRAPH_TEST_MODELS", REPO / ".cache" / "models"))


def eval_data(sub: str) -> Path:
    p = EVAL_DATA / sub
    if not p.exists():
        pytest.skip(f"evaluation data {p} is absent (set TASTEGRAPH_EVAL_DATA)")
    return p


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    # TASTEGRAPH_TEST_STORE=postgresql runs the app-level tests on a fresh PostgreSQL database.
    kw = {}
    if os.environ.get("TASTEGRAPH_TEST_STORE") == "postgresql":
        kw["store_url"] = str(request.getfixturevalue("postgres_url"))
        # and the CLI commands a test runs open that database too
        request.getfixturevalue("monkeypatch").setenv("TASTEGRAPH_STORE_URL", kw["store_url"])
    return Settings(data_dir=tmp_path / "data", whiten_min_pins=10_000, index_kind="exact", **kw)


@pytest.fixture
def fake_app(settings: Settings) -> Iterator[App]:
    app = build(settings, encoders=fake_encoders())
    yield app
    app.close()


def real_settings(tmp_path: Path, **kw: object) -> Settings:
    """Settings for real-model tests: fresh data dir, shared model export cache."""
    data = tmp_path / "data"
    (data).mkdir(parents=True, exist_ok=True)
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    (data / "models").symlink_to(MODEL_CACHE, target_is_directory=True)
    return Settings(data_dir=data, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (see ``tests/postgres.py``); skips without one, fails in CI."""
    server, why = start_server()
    if server is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs PostgreSQL: {why}")
        pytest.skip(why)
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database at the newest schema, dropped after the test."""
    url = postgres.fresh_database()
    yield url
    postgres.drop(url)
