"""The settings command: every setting, its value and where the value came from."""

from __future__ import annotations

import os
from typing import Any

from rich.markup import escape
from rich.table import Column, Table

from tastegraph.cli.common import DataOpt, JsonOpt, app, out, print_json, settings_for
from tastegraph.settings import Settings, env_var, legacy_env_var, setting_fields, setting_sources


@app.command("settings")
def show_settings(data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Every setting with its value, where it came from (flag, env, toml, default) and what it
    does, one table per section; set one with TASTEGRAPH_<SECTION>_<NAME> or in a [section]
    table of tastegraph.toml."""
    s = settings_for(data)
    # typer fills --data from TASTEGRAPH_DATA_DIR too: that is the environment, not a flag.
    from_env = data is not None and os.environ.get("TASTEGRAPH_DATA_DIR") == str(data)
    sources = setting_sources(data_dir=None if from_env else data)
    rows = _rows(s, sources)
    if as_json:
        print_json(rows)
        return
    for section, group in _sections(rows).items():
        doc = Settings.model_fields[section].description if section != "general" else None
        title = f"[{section}]" + (f" {doc}" if doc else "")
        table = Table(
            Column("setting", no_wrap=True), "value", "from", "what it does", title=escape(title)
        )
        for path, row in group.items():
            table.add_row(
                escape(path.split(".")[-1]),
                escape(str(row["value"])),
                escape(row["source"]),
                escape(row["description"]),
            )
        out.print(table)


def _rows(s: Settings, sources: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One entry per setting by dotted path: value (as JSON), source, env var(s), description."""
    values = s.model_dump(mode="json")
    rows: dict[str, dict[str, Any]] = {}
    for path, field in setting_fields().items():
        value: Any = values
        for part in path.split("."):
            value = value[part]
        row: dict[str, Any] = {
            "value": value,
            "source": sources[path],
            "env": env_var(path),
            "description": field.description or "",
        }
        old = legacy_env_var(path)
        if old is not None:
            row["env_alias"] = old
        rows[path] = row
    return rows


def _sections(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path, row in rows.items():
        section = path.split(".")[0] if "." in path else "general"
        out.setdefault(section, {})[path] = row
    return out
