"""Settings: each is documented, reachable by name, and says where its value came from."""

# codemod_settings: skip-file (old names on purpose)
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tastegraph.app import App
from tastegraph.cli import app
from tastegraph.errors import InvalidSetting
from tastegraph.feed.data import FeedParams
from tastegraph.settings import (
    LEGACY,
    FeedSettings,
    Settings,
    env_var,
    get_settings,
    legacy_env_var,
    setting_fields,
    setting_sources,
)
from tastegraph.settings.docs import markdown

REPO = Path(__file__).resolve().parents[3]
# Environment variables that are not settings: the config file's path, the tests' model cache
# and feature file, a bench-only switch.
NOT_SETTINGS = {"CONFIG", "TEST_MODELS", "TEST_FEATURES", "OV_CHUNKS", "TEST_POSTGRES_URL"}
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.fixture(autouse=True)
def _no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No tastegraph.toml of the working directory and no TASTEGRAPH_* of the caller leak in."""
    monkeypatch.setenv("TASTEGRAPH_CONFIG", str(tmp_path / "absent.toml"))
    for var in [env_var(p) for p in setting_fields()] + [f"TASTEGRAPH_{n.upper()}" for n in LEGACY]:
        monkeypatch.delenv(var, raising=False)


def test_every_setting_has_a_description() -> None:
    missing = [p for p, f in setting_fields().items() if len(f.description or "") < 10]
    assert missing == []
    sections = [n for n, f in Settings.model_fields.items() if len(f.description or "") < 10]
    assert sections == []


def test_feed_settings_mirror_the_engine_params() -> None:
    """FeedSettings and the engine's FeedParams have the same fields, in order, and defaults."""
    params = {f.name: f.default for f in dataclasses.fields(FeedParams)}
    settings = {n: f.default for n, f in FeedSettings.model_fields.items()}
    assert list(settings) == list(params)
    assert settings == params
    assert FeedParams(**FeedSettings().model_dump()) == FeedParams()


def test_every_variable_the_docs_name_is_a_setting() -> None:
    known = {env_var(p) for p in setting_fields()} | {
        v for p in setting_fields() if (v := legacy_env_var(p)) is not None
    }
    sections = {f"TASTEGRAPH_{n.upper()}_*" for n in Settings.model_fields}  # TASTEGRAPH_FEED_*
    wrong = []
    for doc in DOCS:
        for m in re.finditer(r"TASTEGRAPH_[A-Z0-9_]*[A-Z0-9](_\*)?", doc.read_text()):
            var = m.group(0)
            if var.removeprefix("TASTEGRAPH_") in NOT_SETTINGS or var in known | sections:
                continue
            wrong.append(f"{doc.name}: {var}")
    assert wrong == []


def test_the_settings_page_is_generated_from_the_model() -> None:
    page = REPO / "docs" / "settings.md"
    assert page.read_text() == markdown(), (
        "docs/settings.md is stale: python -m tastegraph.settings.docs > docs/settings.md"
    )
    documented = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", page.read_text(), re.M))
    assert documented == set(setting_fields())


def test_old_flat_names_keep_working_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "tastegraph.toml"
    toml.write_text('thumbnail_size = 128\n[api]\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("TASTEGRAPH_CONFIG", str(toml))
    monkeypatch.setenv("TASTEGRAPH_IMAGE_MODEL", "lite0")  # flat
    monkeypatch.setenv("TASTEGRAPH_STORE_URL", "sqlite:///x.db")  # flat and sectioned alike
    monkeypatch.setenv("TASTEGRAPH_DATA_DIR", str(tmp_path / "d"))
    s = Settings(port=9001, index_kind="exact")
    assert (s.api.port, s.index.kind, s.models.image) == (9001, "exact", "lite0")
    assert (s.ingest.thumbnail_size, s.api.host) == (128, "0.0.0.0")
    assert s.store.url == "sqlite:///x.db" and s.data_dir == tmp_path / "d"
    assert s.resolved_store_url == "sqlite:///x.db"
    # The new names win over the old ones from the same kind of source.
    monkeypatch.setenv("TASTEGRAPH_MODELS_IMAGE", "lite1")
    assert Settings().models.image == "lite1"


def test_sources_follow_the_precedence_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "tastegraph.toml"
    toml.write_text('port = 9100\n[api]\nhost = "0.0.0.0"\n[feed]\nn_fresh = 5\nseed = 3\n')
    monkeypatch.setenv("TASTEGRAPH_CONFIG", str(toml))
    monkeypatch.setenv("TASTEGRAPH_HOST", "127.0.0.2")  # the old name of api.host
    monkeypatch.setenv("TASTEGRAPH_FEED_SEED", "4")
    got = setting_sources(index_kind="exact", feed={"cf_k": 9})
    assert got["index.kind"] == "flag"
    assert got["feed.cf_k"] == "flag"
    assert got["api.host"] == "env TASTEGRAPH_HOST"  # env beats the file
    assert got["feed.seed"] == "env TASTEGRAPH_FEED_SEED"
    assert got["api.port"] == f"toml {toml}"
    assert got["feed.n_fresh"] == f"toml {toml}"
    assert got["ingest.dup_max_distance"] == "default"
    s = Settings(index_kind="exact", feed={"cf_k": 9})
    # what the sources say is what is used
    assert (s.api.host, s.api.port, s.index.kind) == ("127.0.0.2", 9100, "exact")
    assert (s.feed.n_fresh, s.feed.seed, s.feed.cf_k) == (5, 4, 9)


@pytest.fixture
def feed_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``[feed]`` table and a TASTEGRAPH_FEED_* variable, set before the app's settings."""
    toml = tmp_path / "tastegraph.toml"
    toml.write_text("[feed]\nmmr_lambda = 0.5\nhide_threshold = 0.6\n")
    monkeypatch.setenv("TASTEGRAPH_CONFIG", str(toml))
    monkeypatch.setenv("TASTEGRAPH_FEED_N_FRESH", "7")


def test_feed_settings_reach_the_served_engine(feed_config: None, fake_app: App) -> None:
    params = fake_app.feeds.engine.params
    assert (params.n_fresh, params.mmr_lambda, params.hide_threshold) == (7, 0.5, 0.6)
    assert params.walk_steps == FeedParams().walk_steps


def test_a_set_hide_threshold_is_not_adapted_to_the_catalog() -> None:
    from tastegraph.feed.service import catalog_params, feed_params

    v = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    adapted = catalog_params(v, base=feed_params(FeedSettings()))
    assert adapted.hide_threshold != FeedParams().hide_threshold
    feed = FeedSettings(hide_threshold=0.75)  # set, even to the default: used as given
    fixed = catalog_params(v, base=feed_params(feed), fixed=feed.model_fields_set)
    assert fixed.hide_threshold == 0.75


def test_digest_hashes_the_same_keys_as_before_the_sections() -> None:
    s = Settings(index_kind="exact")
    before = json.dumps({"index_kind": "exact"}, sort_keys=True, default=str).encode()
    assert s.digest("index.kind") == s.digest("index_kind")
    assert s.digest("index.kind") == hashlib.sha256(before).hexdigest()[:16]


def test_a_bad_value_names_the_setting_its_source_and_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASTEGRAPH_FEED_MMR_LAMBDA", "3")
    with pytest.raises(InvalidSetting) as e:
        get_settings()
    assert e.value.message == (
        "setting feed.mmr_lambda = '3' (env TASTEGRAPH_FEED_MMR_LAMBDA) is not accepted: "
        "expected a number >= 0 and <= 1"
    )
    monkeypatch.delenv("TASTEGRAPH_FEED_MMR_LAMBDA")
    with pytest.raises(
        InvalidSetting, match=r"^setting api\.port = 0 \(flag\) .* >= 1 and <= 65535"
    ):
        get_settings(port=0)


def test_an_unknown_key_in_the_file_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "tastegraph.toml"
    toml.write_text("[feed]\nexplore_share_mn = 0.1\n")
    monkeypatch.setenv("TASTEGRAPH_CONFIG", str(toml))
    with pytest.raises(InvalidSetting) as e:
        get_settings()
    assert e.value.message == (
        f"unknown setting feed.explore_share_mn (toml {toml}); did you mean feed.explore_share_min?"
    )
    r = CliRunner().invoke(app, ["settings"])
    assert r.exit_code == 1
    assert "unknown setting feed.explore_share_mn" in r.stderr and "Traceback" not in r.output


def test_settings_command_prints_values_and_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASTEGRAPH_PORT", "9001")
    monkeypatch.setenv("TASTEGRAPH_FEED_N_FRESH", "3")
    r = CliRunner().invoke(app, ["settings", "--json"])
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert set(body) == set(setting_fields())
    assert body["api.port"] == {
        "value": 9001,
        "source": "env TASTEGRAPH_PORT",
        "env": "TASTEGRAPH_API_PORT",
        "env_alias": "TASTEGRAPH_PORT",
        "description": setting_fields()["api.port"].description,
    }
    assert body["feed.n_fresh"]["source"] == "env TASTEGRAPH_FEED_N_FRESH"
    assert body["data_dir"]["env"] == "TASTEGRAPH_DATA_DIR"
    table = CliRunner().invoke(app, ["settings"])
    assert table.exit_code == 0
    for section in ("[store]", "[models]", "[index]", "[search]", "[ingest]", "[events]"):
        assert section in table.stdout
    assert "[feed]" in table.stdout and "[api]" in table.stdout
    assert "max_future_s" in table.stdout and "explore_share_min" in table.stdout
