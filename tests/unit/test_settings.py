"""Settings: each is documented, reachable by name, and says where its value came from."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tastegraph.cli import app
from tastegraph.settings import Settings, setting_sources

REPO = Path(__file__).resolve().parents[2]
# Environment variables that are not settings: the config file's path, the evaluation data of
# tests and benches, the tests' model cache and feature file, a bench-only switch.
NOT_SETTINGS = {"CONFIG", "EVAL_DATA", "TEST_MODELS", "TEST_FEATURES", "OV_CHUNKS"}


def test_every_setting_has_a_description() -> None:
    missing = [n for n, f in Settings.model_fields.items() if len(f.description or "") < 10]
    assert missing == []


def test_every_variable_the_docs_name_is_a_setting() -> None:
    names = set(Settings.model_fields)
    wrong = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for var in re.findall(r"TASTEGRAPH_([A-Z0-9_]+)", doc.read_text()):
            if var not in NOT_SETTINGS and var.lower() not in names:
                wrong.append(f"{doc.name}: TASTEGRAPH_{var}")
    assert wrong == []


def test_sources_follow_the_precedence_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "tastegraph.toml"
    toml.write_text('port = 9100\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("TASTEGRAPH_CONFIG", str(toml))
    monkeypatch.setenv("TASTEGRAPH_HOST", "127.0.0.2")
    got = setting_sources(index_kind="exact")
    assert got["index_kind"] == "flag"
    assert got["host"] == "env TASTEGRAPH_HOST"  # env beats the file
    assert got["port"] == f"toml {toml}"
    assert got["dup_max_distance"] == "default"
    s = Settings(index_kind="exact")
    assert (s.host, s.port) == ("127.0.0.2", 9100)  # what the sources say is what is used


def test_settings_command_prints_values_and_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASTEGRAPH_PORT", "9001")
    r = CliRunner().invoke(app, ["settings", "--json"])
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert set(body) == set(Settings.model_fields)
    assert body["port"] == {
        "value": 9001,
        "source": "env TASTEGRAPH_PORT",
        "env": "TASTEGRAPH_PORT",
        "description": Settings.model_fields["port"].description,
    }
    table = CliRunner().invoke(app, ["settings"])
    assert table.exit_code == 0 and "events_max_future_s" in table.stdout
