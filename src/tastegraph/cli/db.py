"""Database commands: ``db upgrade`` brings the store's schema to this version's; ``db copy``
moves a catalog from one store to another."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Annotated, Any

import typer
from rich.table import Table

from tastegraph.cli.common import DataOpt, JsonOpt, app, err, fail, out, print_json, settings_for
from tastegraph.errors import TastegraphError

db_app = typer.Typer(help="The database behind the store.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Run the schema migrations up to this version's (TASTEGRAPH_STORE_URL, or the data dir's
    SQLite file). A shared PostgreSQL store is never upgraded by just opening it: stop the
    servers, back it up, run this once."""
    from tastegraph.store import open_store
    from tastegraph.store.db import safe_url

    s = settings_for(data)
    url = s.resolved_store_url
    try:
        store = open_store(url, upgrade=True)
    except TastegraphError as e:
        fail(e)
    try:
        heads = store.db.schema_heads()
    finally:
        store.close()
    if as_json:
        print_json({"store": safe_url(url), "schema": heads})
    else:
        out.print(f"{safe_url(url)} is at schema {', '.join(heads)}")


@db_app.command("copy")
def db_copy(
    source: Annotated[str, typer.Argument(help="Store URL to copy from, e.g. sqlite:///PATH.")],
    destination: Annotated[
        str, typer.Argument(help="Empty store URL to copy into, e.g. postgresql+psycopg://...")
    ],
    batch: Annotated[int, typer.Option("--batch-size", help="Rows per insert.", min=1)] = 2000,
    as_json: JsonOpt = False,
) -> None:
    """Copy a whole catalog into an empty store (e.g. SQLite to PostgreSQL), ids kept.

    Upgrades the destination's schema, copies every table in one transaction (a copy that
    is stopped commits nothing: rerun it), checks row counts and checksums, and sets the id
    sequences. Stop the servers writing to the source first."""
    from tastegraph.progress import progress_bar
    from tastegraph.store.copy import copy_store

    bars: dict[str, Any] = {}
    stack = ExitStack()

    def progress(table: str, done: int, total: int) -> None:
        if table not in bars:
            bars[table] = [stack.enter_context(
                progress_bar(table, total, unit="rows", enabled=not as_json and err.is_terminal)
            ), 0]  # fmt: skip
        bar = bars[table]
        bar[0].advance(done - bar[1])
        bar[1] = done

    try:
        with stack:
            report = copy_store(source, destination, batch=batch, progress=progress)
    except TastegraphError as e:
        fail(e)
    summary = {
        "source": report.source,
        "destination": report.destination,
        "rows": report.rows,
        "seconds": round(report.seconds, 2),
        "tables": {
            tc.name: {"rows": tc.rows, "checksum": tc.checksum, "next_id": _next(tc.high_water)}
            for tc in report.tables
        },
    }
    if as_json:
        print_json(summary)
        return
    table = Table("table", "rows", "checksum", "next id", title="copied and verified")
    for tc in report.tables:
        table.add_row(tc.name, str(tc.rows), tc.checksum[:16], str(_next(tc.high_water) or "-"))
    out.print(table)
    out.print(
        f"copied {report.rows} rows from {report.source} to {report.destination} "
        f"in {report.seconds:.1f} s; counts and checksums match"
    )


def _next(high_water: int | None) -> int | None:
    return None if high_water is None else high_water + 1
