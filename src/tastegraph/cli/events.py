"""Engagement event commands: import, list, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tastegraph.cli import common
from tastegraph.cli.common import (
    EXIT_PARTIAL,
    DataOpt,
    JsonOpt,
    err,
    events_app,
    fail,
    out,
    print_json,
    settings_for,
)
from tastegraph.errors import InvalidInput, TastegraphError


@events_app.command("import")
def events_import(
    file: Annotated[Path, typer.Argument(help="CSV or JSONL of events.")],
    data: DataOpt = None,
    as_json: JsonOpt = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Import engagement events; bad rows are reported, good ones kept. Exit 3 if any bad."""
    try:
        res = common.build_app(settings_for(data)).engagement.import_file(file, progress=progress)
    except TastegraphError as e:
        fail(e)
    if as_json:
        print_json(res)
    else:
        err.print(
            f"{res['accepted']} accepted, {res['duplicates']} duplicates ignored, "
            f"{res['rejected']} rejected ({res['events_per_s']} events/s)"
        )
        for row in res["errors"][:20]:  # messages quote the data: no markup in them
            err.print(f"  [red]row {row['row']}[/]: {escape(row['message'])}")
    if res["rejected"]:
        raise typer.Exit(EXIT_PARTIAL)


def _event_filter(**given: Any) -> Any:
    from tastegraph.engagement.events import EventFilter

    return EventFilter.parse(**given)


UserOpt = Annotated[int | None, typer.Option("--user", help="Events of this user id.")]


PinOpt = Annotated[int | None, typer.Option("--pin", help="Events on this pin id.")]


KindOpt = Annotated[str | None, typer.Option("--kind", help="click, save, hide, ...")]


AfterOpt = Annotated[str | None, typer.Option("--after", help="ts >= TIME (ISO 8601 or epoch).")]


BeforeOpt = Annotated[str | None, typer.Option("--before", help="ts < TIME.")]


KeyOpt = Annotated[str | None, typer.Option("--key", help="The event with this key.")]


IdsOpt = Annotated[
    str | None, typer.Option("--id-range", help="Event ids A-B, A- or -B (ends included).")
]


FutureOpt = Annotated[
    bool, typer.Option("--future", help="Times past the accepted window (far future).")
]


InvalidOpt = Annotated[
    bool, typer.Option("--invalid", help="Rows the event parser would reject today.")
]


def _where(
    user: int | None,
    pin: int | None,
    kind: str | None,
    after: str | None,
    before: str | None,
    key: str | None,
    id_range: str | None,
    future: bool,
    invalid: bool,
    every: bool = False,
) -> Any:
    lo, dash, hi = (id_range or "").strip().partition("-")
    if id_range and not (dash and (lo + hi).isdigit() and (lo + hi).isascii()):
        raise InvalidInput(
            f"bad --id-range {id_range!r}",
            hint="write it as FIRST-LAST (10-20), FIRST- or -LAST, both ends included",
        )
    return _event_filter(
        user_id=user,
        pin_id=pin,
        kind=kind,
        after=after,
        before=before,
        key=key,
        min_id=lo or None,
        max_id=hi or None,
        future=future,
        invalid=invalid,
        all=every,
    )


@events_app.command("list")
def events_list(
    data: DataOpt = None,
    user: UserOpt = None,
    pin: PinOpt = None,
    kind: KindOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    key: KeyOpt = None,
    id_range: IdsOpt = None,
    future: FutureOpt = False,
    invalid: InvalidOpt = False,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Logged events that match every criterion given (no criterion: counts per kind)."""
    try:
        tg = common.build_app(settings_for(data))
        where = _where(user, pin, kind, after, before, key, id_range, future, invalid)
        res = tg.engagement.stats() if where.is_empty() else tg.engagement.find(where, limit)
    except TastegraphError as e:
        fail(e)
    if as_json:
        print_json(res)
        return
    if "by_kind" in res:
        out.print(
            f"{res['events']} events {res['by_kind']}; {res['future']} past the window, "
            f"{res['invalid']} invalid (window {res['window']})"
        )
        return
    table = Table("id", "user", "pin", "kind", "ts", "key")
    for ev in res["events"]:
        table.add_row(
            *(escape(str(ev[c])) for c in ("id", "user_id", "pin_id", "kind", "ts", "key"))
        )
    out.print(table)
    out.print(f"{res['matched']} matching events (window {res['window']})")


@events_app.command("delete")
def events_delete(
    data: DataOpt = None,
    user: UserOpt = None,
    pin: PinOpt = None,
    kind: KindOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    key: KeyOpt = None,
    id_range: IdsOpt = None,
    future: FutureOpt = False,
    invalid: InvalidOpt = False,
    every: Annotated[bool, typer.Option("--all", help="Every event (given alone).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count them.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete logged events that match every criterion given; audited, rows kept in a file."""
    import getpass

    try:
        tg = common.build_app(settings_for(data))
        where = _where(user, pin, kind, after, before, key, id_range, future, invalid, every)
        res = tg.engagement.delete(
            where, actor=(None, "local"), by=f"cli:{getpass.getuser()}", dry_run=dry_run
        )
    except TastegraphError as e:
        fail(e)
    if as_json:
        print_json(res)
    elif dry_run:
        err.print(f"{res['matched']} events would be deleted (dry run; nothing changed)")
    else:
        err.print(f"{res['deleted']} events deleted")
        if res["saved_to"]:
            err.print(
                f"  copy kept in {escape(res['saved_to'])} (`tastegraph events import` "
                "restores it); a running server forgets them within seconds; "
                "`tastegraph train` refits the ranker without them"
            )
