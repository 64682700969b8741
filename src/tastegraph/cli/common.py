"""The command tree, shared options and helpers of the ``tastegraph`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from tastegraph.errors import TastegraphError
from tastegraph.settings import Settings, get_settings

app = typer.Typer(
    help="tastegraph: visual discovery on your own image catalog.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure quality on labelled data.", no_args_is_help=True)
events_app = typer.Typer(help="Engagement events.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their boards.", no_args_is_help=True)
boards_app = typer.Typer(help="Boards: list and show them.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(eval_app, name="eval")
app.add_typer(events_app, name="events")
app.add_typer(users_app, name="users")
app.add_typer(boards_app, name="boards")


err = Console(stderr=True)
out = Console()


EXIT_PARTIAL = 3  # ingest finished but some inputs were quarantined
EXIT_EMPTY = 4  # ingest found nothing to ingest (an empty folder or manifest)


DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data", envvar="TASTEGRAPH_DATA_DIR", help="Data dir (default ./tastegraph-data)."
    ),
]


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


# Ids are positive 64-bit integers (SQLite rowids): anything else is a usage error, not a crash.
MAX_ID = 2**63 - 1


def settings_for(data: Path | None, **kw: Any) -> Settings:
    """Settings with the command's flags on top (flat names: ``host=``, ``index_kind=``...);
    a bad or unknown setting is a one-line error per problem, not a traceback."""
    try:
        return get_settings(data_dir=data, **kw)
    except TastegraphError as e:
        fail(e)


def report(e: TastegraphError) -> None:
    """The error's message and hint on stderr."""
    # Escaped: messages quote user input and hints name placeholders like [ ] or [clip].
    err.print(f"[bold red]error:[/] {escape(e.message)}")
    if e.cli_hint:
        err.print(f"[yellow]hint:[/] {escape(e.cli_hint)}")


def fail(e: TastegraphError) -> NoReturn:
    report(e)
    raise typer.Exit(1)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def build_app(s: Settings) -> Any:
    from tastegraph.app import build

    return build(s)


def open_catalog(s: Settings) -> Any:
    """The app over an existing, non-empty catalog, else a clear error (nothing is created)."""
    from tastegraph.catalog.existing import open_existing

    return open_existing(s, build=build_app)  # build_app looked up now: tests swap it


ExplainOpt = Annotated[bool, typer.Option("--explain", help="Show each result's signal scores.")]


def search_filters(board: str | None, tag: str | None, attr: list[str] | None) -> Any:
    from tastegraph.search.service import parse_filters

    return parse_filters(board, tag, attr)
