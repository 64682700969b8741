"""People commands: users, boards, saves and API tokens."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tastegraph.cli import common
from tastegraph.cli.common import (
    MAX_ID,
    DataOpt,
    JsonOpt,
    app,
    boards_app,
    err,
    fail,
    out,
    print_json,
    settings_for,
    token_app,
    users_app,
)
from tastegraph.errors import TastegraphError


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="viewer, editor or admin")],
    name: Annotated[str, typer.Option(help="Who or what uses it.")] = "cli",
    data: DataOpt = None,
) -> None:
    """Create a token and print its secret once."""
    try:
        tg = common.build_app(settings_for(data))
        info, secret = tg.store.create_token(name, role)
    except TastegraphError as e:
        fail(e)
    err.print(f"token {info.id} ({info.role}) created; store it now, it is not shown again:")
    sys.stdout.write(secret + "\n")


@token_app.command("list")
def token_list(data: DataOpt = None) -> None:
    """List tokens (never their secrets)."""
    tg = common.build_app(settings_for(data))
    for t in tg.store.list_tokens():
        state = f"revoked {t.revoked_at}" if t.revoked_at else "active"
        out.print(f"{t.id}\t{t.role}\t{t.name}\t{t.created_at}\t{state}")


@token_app.command("revoke")
def token_revoke(
    token_id: int,
    data: DataOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Revoke even the last active admin token.")
    ] = False,
) -> None:
    """Revoke a token (the last active admin token only with --force)."""
    try:
        common.build_app(settings_for(data)).store.revoke_token(token_id, allow_last_admin=force)
    except TastegraphError as e:
        fail(e)


@users_app.command("create")
def users_create(
    handle: Annotated[str, typer.Argument(help="Unique handle.")],
    name: str = "",
    data: DataOpt = None,
) -> None:
    """Create a user; prints its id."""
    try:
        u = common.build_app(settings_for(data)).store.create_user(handle, name)
    except TastegraphError as e:
        fail(e)
    sys.stdout.write(f"{u['id']}\n")


@users_app.command("board")
def users_board(
    user_id: Annotated[int, typer.Argument(help="Owner's user id.", min=1, max=MAX_ID)],
    name: Annotated[str, typer.Argument(help="Board name.")],
    description: str = "",
    data: DataOpt = None,
) -> None:
    """Create a board for a user; prints its id."""
    try:
        b = common.build_app(settings_for(data)).store.create_board(user_id, name, description)
    except TastegraphError as e:
        fail(e)
    sys.stdout.write(f"{b['id']}\n")


@users_app.command("list")
def users_list(
    data: DataOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List users, by id."""
    from tastegraph.cli.render import users_table

    try:
        users = common.build_app(settings_for(data)).store.list_users(offset=offset, limit=limit)
    except TastegraphError as e:
        fail(e)
    if as_json:
        from tastegraph.api.serialize import user_json

        print_json({"results": [user_json(u) for u in users], "offset": offset, "limit": limit})
        return
    out.print(users_table(users))
    if not users:
        err.print(
            "no users" + (" from there" if offset else "") + "; add one with "
            "`tastegraph users create HANDLE`"
        )


def _boards_with_pins(store: Any, user_id: int) -> list[dict[str, Any]]:
    return [store.get_board(int(b["id"])) for b in store.user_boards(user_id)]


@users_app.command("show")
def users_show(
    user_id: Annotated[int, typer.Argument(help="User id.", min=1, max=MAX_ID)],
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A user and their boards."""
    from tastegraph.cli.render import boards_table, users_table

    try:
        store = common.build_app(settings_for(data)).store
        user = store.get_user(user_id)
        boards = store.user_boards(user_id)  # as GET /users/{id} gives them
        counted = _boards_with_pins(store, user_id)
    except TastegraphError as e:
        fail(e)
    if as_json:
        from tastegraph.api.serialize import user_json

        print_json(user_json(user, boards))
        return
    out.print(users_table([user]))
    if counted:
        out.print(boards_table(counted, f"boards of {user['handle']}"))
    else:
        err.print(f"no boards yet; add one with `tastegraph users board {user_id} NAME`")


@boards_app.command("list")
def boards_list(
    user: Annotated[int, typer.Option("--user", help="Owner's user id.", min=1, max=MAX_ID)],
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A user's boards, with how many pins each holds."""
    from tastegraph.cli.render import boards_table

    try:
        store = common.build_app(settings_for(data)).store
        store.get_user(user)
        boards = _boards_with_pins(store, user)
    except TastegraphError as e:
        fail(e)
    if as_json:
        from tastegraph.api.serialize import board_json

        print_json({"results": [board_json(b) for b in boards]})
        return
    out.print(boards_table(boards))


@boards_app.command("show")
def boards_show(
    board_id: Annotated[int, typer.Argument(help="Board id.", min=1, max=MAX_ID)],
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A board and its pins, in the order they were saved."""
    from tastegraph.cli.render import boards_table

    try:
        tg = common.build_app(settings_for(data))
        board = tg.store.get_board(board_id)  # as GET /boards/{id} gives it
        pins = tg.store.get_pins(board["pins"])
    except TastegraphError as e:
        fail(e)
    if as_json:
        from tastegraph.api.serialize import board_json

        print_json(board_json(board))
        return
    out.print(boards_table([board], "board"))
    t = Table("pin", "title / tags", "source")
    for pid in board["pins"]:
        if pid in pins:
            p = pins[pid]
            t.add_row(str(pid), escape(p.title or ", ".join(p.tags[:3])), escape(p.source))
    out.print(t)


@app.command()
def save(
    board_id: Annotated[int, typer.Argument(help="Board id.", min=1, max=MAX_ID)],
    pin_id: Annotated[int, typer.Argument(help="Pin id.", min=1, max=MAX_ID)],
    data: DataOpt = None,
) -> None:
    """Save a pin to a board (logged as a save event)."""
    try:
        tg = common.build_app(settings_for(data))
        board = tg.store.get_board(board_id)
        new = tg.engagement.save(board["user_id"], board_id, pin_id)
    except TastegraphError as e:
        fail(e)
    err.print("saved" if new else "already on that board")


@users_app.command("export")
def users_export(
    user_id: Annotated[int, typer.Argument(help="The user's id.", min=1, max=MAX_ID)],
    data: DataOpt = None,
) -> None:
    """Print everything stored about a user as JSON (audited): redirect it to a file."""
    import getpass

    try:
        tg = common.build_app(settings_for(data))
        document = tg.people.export(user_id)
        tg.store.audit(None, "local", "export_user", f"user:{user_id} by cli:{getpass.getuser()}")
    except TastegraphError as e:
        fail(e)
    print_json(document)


@users_app.command("delete")
def users_delete(
    user_id: Annotated[int, typer.Argument(help="The user's id.", min=1, max=MAX_ID)],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Erase a user: account, boards, saves and engagement events (no copy is kept); running
    servers forget them on their next catch-up. `tastegraph users export ID` first if the
    person asked for their data."""
    try:
        tg = common.build_app(settings_for(data))
        user = tg.store.get_user(user_id)
        if not yes and not typer.confirm(
            f"erase user {user_id} ({user['handle']}) and all their data? this cannot be undone"
        ):
            err.print("nothing erased")
            raise typer.Exit(1)
        record = tg.people.erase(user_id, actor=(None, "local"))
    except TastegraphError as e:
        fail(e)
    if as_json:
        print_json(record)
        return
    out.print(
        f"erased user {user_id}: {record['boards']} boards, {record['saves']} saves, "
        f"{record['events']} events, {record['event_copies_scrubbed']} kept copies of deleted "
        f"events (audit reference {record['erasure']})"
    )
