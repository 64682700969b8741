"""The settings command: every setting, its value and where the value came from."""

from __future__ import annotations

import os

from rich.markup import escape
from rich.table import Column, Table

from tastegraph.cli.common import DataOpt, JsonOpt, app, out, print_json, settings_for
from tastegraph.settings import Settings, setting_sources


@app.command("settings")
def show_settings(data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Every setting with its value, where it came from (flag, env, toml, default) and what it
    does; set one with TASTEGRAPH_<NAME> or in tastegraph.toml."""
    s = settings_for(data)
    # typer fills --data from TASTEGRAPH_DATA_DIR too: that is the environment, not a flag.
    from_env = data is not None and os.environ.get("TASTEGRAPH_DATA_DIR") == str(data)
    sources = setting_sources(data_dir=None if from_env else data)
    values = s.model_dump(mode="json")
    if as_json:
        print_json(
            {
                name: {
                    "value": values[name],
                    "source": sources[name],
                    "env": f"TASTEGRAPH_{name.upper()}",
                    "description": field.description,
                }
                for name, field in Settings.model_fields.items()
            }
        )
        return
    table = Table(Column("setting", no_wrap=True), "value", "from", "what it does")
    for name, field in Settings.model_fields.items():
        table.add_row(
            escape(name),
            escape(str(values[name])),
            escape(sources[name]),
            escape(field.description or ""),
        )
    out.print(table)
