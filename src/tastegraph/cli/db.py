"""Database commands: ``tastegraph db upgrade`` brings the store's schema to this version's."""

from __future__ import annotations

import typer

from tastegraph.cli.common import DataOpt, JsonOpt, app, fail, out, print_json, settings_for
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
