"""The ``tastegraph`` command: one verb per capability, each calling the library function."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tastegraph.errors import InvalidInput, TastegraphError
from tastegraph.settings import Settings, get_settings

__all__ = ["main"]

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


def _settings(data: Path | None, **kw: Any) -> Settings:
    return get_settings(data_dir=data, **kw)


def _fail(e: TastegraphError) -> NoReturn:
    # Escaped: messages quote user input and hints name placeholders like [ ] or [clip].
    err.print(f"[bold red]error:[/] {escape(e.message)}")
    if e.cli_hint:
        err.print(f"[yellow]hint:[/] {escape(e.cli_hint)}")
    raise typer.Exit(1)


def _dict_table(res: dict[str, Any], title: str) -> Any:
    from tastegraph.cli_render import dict_table

    return dict_table(res, title)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _build(s: Settings) -> Any:
    from tastegraph.app import build

    return build(s)


def _catalog(s: Settings) -> Any:
    """The app over an existing, non-empty catalog, else a clear error (nothing is created)."""
    from tastegraph.catalog.existing import open_existing

    return open_existing(s, build=_build)  # _build looked up now: tests swap it


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="A folder, or a CSV/JSONL manifest.")],
    data: DataOpt = None,
    as_json: JsonOpt = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Add every image a folder or manifest names; a manifest row for an image already in the
    catalog updates its words. Exit 3 when some inputs were rejected, 4 when the source is empty.
    """
    from tastegraph.catalog.ingest import ingest as run

    try:
        tg = _build(_settings(data))
        try:
            report = run(tg, source, progress=progress)
        finally:
            tg.close()
    except TastegraphError as e:
        _fail(e)
    d = report.to_dict()
    if as_json:
        _print_json(d)
    else:
        for r in report.interrupted:
            resume = (
                "this run resumed it (images it had finished were skipped)"
                if r.source == report.source
                else f"run `tastegraph ingest {r.source}` to resume it"
            )
            err.print(
                f"[yellow]note:[/] ingest run {r.run_id} (started {r.started_at}) was "
                f"interrupted: its process is gone; {resume}."
            )
        err.print(_ingest_summary(d))
        for q in report.quarantine[:20]:
            err.print(f"  [red]rejected[/] {q.source}: {q.reason}: {q.message}")
        if len(report.quarantine) > 20:
            err.print(
                f"  … {len(report.quarantine) - 20} more: `tastegraph quarantine {d['run_id']}`"
            )
    if report.empty:
        err.print(
            f"[yellow]warning:[/] nothing to ingest: {source} names no images.",
        )
        err.print("[yellow]hint:[/] give a folder with image files, or a non-empty manifest.")
        raise typer.Exit(EXIT_EMPTY)
    if report.partial:
        raise typer.Exit(EXIT_PARTIAL)


def _ingest_summary(d: dict[str, Any]) -> str:
    known = d["skipped"] + d["existing"]
    words = f" ({d['updated']} updated, {d['unchanged']} unchanged)" if known else ""
    setup = (
        f", after {d['setup_seconds']:.0f} s of one-off setup" if d["setup_seconds"] >= 1 else ""
    )
    rate = f" ({d['images_per_s']} img/s{setup})" if d["added"] else ""
    return (
        f"{d['status']}: {d['added']} added, {d['existing']} already known, "
        f"{d['skipped']} done before{words}, {d['rejected']} rejected, "
        f"{d['near_duplicate_groups']} near-duplicate groups among the new pins{rate}"
    )


ExplainOpt = Annotated[bool, typer.Option("--explain", help="Show each result's signal scores.")]


def _print_page(tg: Any, page: Any, as_json: bool, explain: bool = False) -> None:
    from tastegraph.api.server import _page_json

    body = _page_json(tg, page, explain)
    if as_json:
        _print_json(body)
        return
    # Raw per-signal scores are for tuning search: a column only with --explain.
    t = Table("pin", "score", "title / tags", *(["signals"] if explain else []))
    for r in body["results"]:
        pin = r["pin"]
        signals = [" ".join(f"{k}={v}" for k, v in r["signals"].items())] if explain else []
        t.add_row(
            str(pin["id"]),
            f"{r['score']:.4f}",
            pin["title"] or ", ".join(pin["tags"][:3]),
            *signals,
        )
    out.print(t)
    out.print(_count_line(body, len(body["results"])))


def _count_line(body: dict[str, Any], shown: int) -> str:
    """How many results, only as far as the search knows (never its depth as a count)."""
    first = body["offset"] + 1
    if body["total"] is not None:
        span = f", showing {first}-{first + shown - 1}" if 0 < shown < body["total"] else ""
        return f"{body['total']} result{'' if body['total'] == 1 else 's'}{span}"
    more = f"; more with --offset {body['next_offset']}" if body["next_offset"] else ""
    return f"results {first}-{first + shown - 1}{more}"


def _filters(board: str | None, tag: str | None, attr: list[str] | None) -> Any:
    from tastegraph.search.service import parse_filters

    return parse_filters(board, tag, attr)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Words to search for.")],
    data: DataOpt = None,
    limit: int = 20,
    offset: int = 0,
    board: str | None = None,
    tag: str | None = None,
    attr: Annotated[list[str] | None, typer.Option(help="key:value, repeatable")] = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Words -> pins (BM25 fused with semantic text and image search)."""
    try:
        tg = _catalog(_settings(data))
        page = tg.search.text(query, limit=limit, offset=offset, filters=_filters(board, tag, attr))
        _print_page(tg, page, as_json, explain)
    except TastegraphError as e:
        _fail(e)


@app.command()
def similar(
    pin_id: Annotated[int | None, typer.Argument(help="A pin id.", min=1, max=MAX_ID)] = None,
    image: Annotated[
        str | None, typer.Option(help="An image file or URL instead of a pin.")
    ] = None,
    box: Annotated[
        str | None,
        typer.Option(help="x0,y0,x1,y1 region of --image (or of the pin's image), in pixels."),
    ] = None,
    data: DataOpt = None,
    limit: int = 20,
    offset: int = 0,
    board: str | None = None,
    tag: str | None = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Image -> pins: more like a pin, an image file or URL, or a region of one."""
    from tastegraph.catalog.images import ImageLimits, read_source_bytes
    from tastegraph.search.service import parse_box

    try:
        if image and pin_id is not None:
            raise InvalidInput(
                "give a pin id or --image, not both",
                hint="`tastegraph similar PIN_ID` or `tastegraph similar --image FILE`",
            )
        region = parse_box(box)  # checked before any image is read
        tg = _catalog(_settings(data))
        f = _filters(board, tag, None)
        if image:
            s = tg.settings
            raw = read_source_bytes(
                image, ImageLimits.from_settings(s), timeout=s.fetch_timeout_s, allow_url=True
            )
            page = tg.search.by_image(raw, box=region, limit=limit, offset=offset, filters=f)
        elif pin_id is not None and region:
            raw = _pin_original(tg, pin_id)
            page = tg.search.by_image(
                raw, box=region, limit=limit, offset=offset, filters=f, exclude=[pin_id]
            )
        elif pin_id is not None:
            page = tg.search.similar(pin_id, limit=limit, offset=offset, filters=f)
        else:
            raise typer.BadParameter("give a pin id or --image")
        _print_page(tg, page, as_json, explain)
    except TastegraphError as e:
        _fail(e)


def _pin_original(tg: Any, pin_id: int) -> bytes:
    """The file pin ``pin_id`` was ingested from, as it was then: a box is in its pixels."""
    from tastegraph.catalog.images import ImageLimits, content_hash, read_source_bytes
    from tastegraph.errors import ImageRejected

    pin = tg.store.get_pin(pin_id)
    s = tg.settings
    other_way = "or search a region of a file: `tastegraph similar --image FILE --box x0,y0,x1,y1`"
    try:
        raw = read_source_bytes(
            pin.source, ImageLimits.from_settings(s), timeout=s.fetch_timeout_s, allow_url=True
        )
    except ImageRejected as exc:
        raise InvalidInput(
            f"--box searches a region of pin {pin_id}'s original image, which cannot be read "
            f"({exc.message})",
            hint=f"make {pin.source or 'its source'} readable again, " + other_way,
        ) from exc
    if content_hash(raw) != pin.content_hash:
        raise InvalidInput(
            f"--box searches a region of pin {pin_id}'s original image, but {pin.source} "
            "has changed since it was ingested",
            hint=other_way,
        )
    return raw


@app.command()
def duplicates(data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """List near-duplicate groups."""
    try:
        tg = _catalog(_settings(data))
        groups = tg.search.duplicates()
    except TastegraphError as e:
        _fail(e)
    if as_json:  # as GET /duplicates gives it
        _print_json({"groups": [{"group": g[0], "pins": g} for g in groups], "total": len(groups)})
        return
    pins = tg.store.get_pins([p for g in groups for p in g])
    for g in groups:
        out.print(f"group {g[0]}: " + ", ".join(f"{p} ({pins[p].source})" for p in g if p in pins))
    out.print(f"{len(groups)} groups")


@app.command()
def quarantine(
    run_id: Annotated[str | None, typer.Argument(help="An ingest run id.")] = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What ingest rejected, with the reason."""
    tg = _build(_settings(data))
    rows = tg.store.quarantine_report(run_id)
    if as_json:  # as GET /quarantine gives it
        _print_json({"results": [r.__dict__ for r in rows], "total": len(rows)})
        return
    for r in rows:
        out.print(f"{r.run_id} {r.source}: {r.reason}: {r.message}")


@app.command()
def reindex(
    data: DataOpt = None,
    refit: Annotated[bool, typer.Option(help="Refit the image whitening first.")] = False,
    reencode: Annotated[
        bool,
        typer.Option(
            help="First re-encode pins whose vectors another model made (after changing "
            "TASTEGRAPH_IMAGE_MODEL), from their original files."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild the vector indexes from the vectors kept in the store. Exit 3 when some pins
    could not be re-encoded (the indexes are then left as they were)."""
    import shutil

    from tastegraph.cli_render import index_table

    try:
        s = _settings(data)
        tg = _build(s)
        done = _reencode(tg, as_json) if reencode else None
        if done is not None and done.failed:
            if as_json:
                _print_json({"reencode": done.to_dict()})
            raise typer.Exit(EXIT_PARTIAL)
        shutil.rmtree(s.data_dir / "indexes" / s.index_kind, ignore_errors=True)
        if refit:
            tg.fit_projection(force=True)
        applied = tg.indexes.sync(save=True)
        if tg.fit_projection():  # the image index was dropped for the new projection
            applied["image"] = tg.indexes.sync(save=True)["image"]
        stats = tg.indexes.stats()
    except TastegraphError as e:
        _fail(e)
    if as_json:
        extra = {"reencode": done.to_dict()} if done is not None else {}
        _print_json({"indexes": stats, "applied": applied, **extra})
    else:
        out.print(index_table(stats))


def _reencode(tg: Any, as_json: bool) -> Any:
    """``reindex --reencode``'s first step, said on stderr; returns the ReencodeReport."""
    from rich.progress import Progress

    from tastegraph.catalog.reencode import reencode

    with Progress(console=err, transient=True, disable=as_json) as bar:
        task = bar.add_task("re-encoding pins with the current models", total=None)
        rep = reencode(
            tg, on_batch=lambda done, total: bar.update(task, completed=done, total=total)
        )
    done = rep.reencoded
    if not as_json:
        err.print(
            f"re-encoded {rep.stale - len(rep.failed)} of {rep.stale} pins made by other models "
            f"(image {done['image']}, text {done['text']})"
        )
    for pin, source, why in rep.failed[:20]:
        err.print(f"  [red]not re-encoded[/] pin {pin} ({escape(source)}): {escape(why)}")
    if len(rep.failed) > 20:
        err.print(f"  … {len(rep.failed) - 20} more")
    if rep.failed:
        err.print(
            "[yellow]hint:[/] put those files back where they were ingested from and run "
            "`tastegraph reindex --reencode` again; the indexes were left as they were"
        )
    return rep


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="viewer, editor or admin")],
    name: Annotated[str, typer.Option(help="Who or what uses it.")] = "cli",
    data: DataOpt = None,
) -> None:
    """Create a token and print its secret once."""
    try:
        tg = _build(_settings(data))
        info, secret = tg.store.create_token(name, role)
    except TastegraphError as e:
        _fail(e)
    err.print(f"token {info.id} ({info.role}) created; store it now, it is not shown again:")
    sys.stdout.write(secret + "\n")


@token_app.command("list")
def token_list(data: DataOpt = None) -> None:
    """List tokens (never their secrets)."""
    tg = _build(_settings(data))
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
        _build(_settings(data)).store.revoke_token(token_id, allow_last_admin=force)
    except TastegraphError as e:
        _fail(e)


@app.command()
def serve(
    data: DataOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Serve the API and the web page until Ctrl-C."""
    from tastegraph.server import run_server

    try:
        run_server(_settings(data, host=host, port=port))
    except TastegraphError as e:
        _fail(e)


@app.command()
def demo(
    images: Annotated[Path | None, typer.Option(help="Folder of your own images.")] = None,
    data: DataOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """Build a demo catalog (your images, the clothing photos, or bundled samples) and serve it."""
    from tastegraph.demo import run_demo

    try:
        run_demo(_settings(data, host=host, port=port), images=images, serve=serve_after)
    except TastegraphError as e:
        _fail(e)


@eval_app.command("retrieval")
def eval_retrieval(
    images: Annotated[Path, typer.Option(help="Folder of images.")],
    labels: Annotated[Path, typer.Option(help="CSV with image,label columns.")],
    data: Annotated[Path | None, typer.Option(help="Keep the evaluation catalog here.")] = None,
    index: Annotated[str | None, typer.Option(help="hnsw or exact.")] = None,
    unlabelled: Annotated[
        str,
        typer.Option(
            help="Comma-separated labels that mean 'no class' (those rows take no part); "
            "pass '' to count every label as a class."
        ),
    ] = "Not sure,Other,Skip,Unknown,None,N/A",
    where: Annotated[
        list[str] | None,
        typer.Option(help="Keep only rows with COLUMN=VALUE (repeatable), e.g. kids=False."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Image -> image retrieval quality: P@1, P@10, mAP@10 (relevant = same label)."""
    from tastegraph.evaluation import evaluate_retrieval
    from tastegraph.evaluation.search_eval import parse_where

    markers = tuple(m.strip() for m in unlabelled.split(",") if m.strip())
    try:
        res = evaluate_retrieval(
            images,
            labels,
            settings=get_settings(index_kind=index),
            data_dir=data,
            unlabelled=("", *markers),
            where=parse_where(where),
        )
    except TastegraphError as e:
        _fail(e)
    _print_json(res) if as_json else out.print(_dict_table(res, "image retrieval"))


@eval_app.command("captions")
def eval_captions(
    images: Annotated[Path, typer.Option(help="Folder of images.")],
    captions: Annotated[Path, typer.Option(help="CSV with image,caption columns.")],
    data: Annotated[Path | None, typer.Option(help="Keep the evaluation catalog here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Words -> image retrieval quality: R@1, R@5, R@10 (one relevant image per caption)."""
    from tastegraph.evaluation import evaluate_captions

    try:
        res = evaluate_captions(images, captions, settings=get_settings(), data_dir=data)
    except TastegraphError as e:
        _fail(e)
    _print_json(res) if as_json else out.print(_dict_table(res, "caption retrieval"))


@eval_app.command("recs")
def eval_recs(
    dataset: Annotated[Path, typer.Option(help="MovieLens folder or user,item,time CSV/TSV.")],
    protocol: Annotated[str, typer.Option(help="loo or temporal")] = "loo",
    seed: int = 0,
    out_dir: Annotated[Path | None, typer.Option(help="Where the plot goes.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recommenders side by side: popularity, ItemKNN, EASE, ALS, BPR and tastegraph."""
    from tastegraph.recs.evaluate import evaluate_recs

    try:
        res = evaluate_recs(dataset, protocol, seed=seed, out_dir=out_dir, progress=True)
    except TastegraphError as e:
        _fail(e)
    _print_json(res) if as_json else out.print(_dict_table(res, "recommenders"))


@users_app.command("create")
def users_create(
    handle: Annotated[str, typer.Argument(help="Unique handle.")],
    name: str = "",
    data: DataOpt = None,
) -> None:
    """Create a user; prints its id."""
    try:
        u = _build(_settings(data)).store.create_user(handle, name)
    except TastegraphError as e:
        _fail(e)
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
        b = _build(_settings(data)).store.create_board(user_id, name, description)
    except TastegraphError as e:
        _fail(e)
    sys.stdout.write(f"{b['id']}\n")


@users_app.command("list")
def users_list(
    data: DataOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List users, by id."""
    from tastegraph.cli_render import users_table

    try:
        users = _build(_settings(data)).store.list_users(offset=offset, limit=limit)
    except TastegraphError as e:
        _fail(e)
    if as_json:
        _print_json({"results": users, "offset": offset, "limit": limit})
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
    from tastegraph.cli_render import boards_table, users_table

    try:
        store = _build(_settings(data)).store
        user = store.get_user(user_id)
        boards = store.user_boards(user_id)  # as GET /users/{id} gives them
        counted = _boards_with_pins(store, user_id)
    except TastegraphError as e:
        _fail(e)
    if as_json:
        _print_json({**user, "boards": boards})
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
    from tastegraph.cli_render import boards_table

    try:
        store = _build(_settings(data)).store
        store.get_user(user)
        boards = _boards_with_pins(store, user)
    except TastegraphError as e:
        _fail(e)
    if as_json:
        _print_json({"results": boards})
        return
    out.print(boards_table(boards))


@boards_app.command("show")
def boards_show(
    board_id: Annotated[int, typer.Argument(help="Board id.", min=1, max=MAX_ID)],
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A board and its pins, in the order they were saved."""
    from tastegraph.cli_render import boards_table

    try:
        tg = _build(_settings(data))
        board = tg.store.get_board(board_id)  # as GET /boards/{id} gives it
        pins = tg.store.get_pins(board["pins"])
    except TastegraphError as e:
        _fail(e)
    if as_json:
        _print_json(board)
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
        tg = _build(_settings(data))
        board = tg.store.get_board(board_id)
        new = tg.engagement.save(board["user_id"], board_id, pin_id)
    except TastegraphError as e:
        _fail(e)
    err.print("saved" if new else "already on that board")


@app.command()
def feed(
    user_id: Annotated[int, typer.Argument(help="User id.", min=1, max=MAX_ID)],
    n: int = 25,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A user's home feed, with the reason for each pin."""
    from tastegraph.api.engagement import _items

    try:
        tg = _catalog(_settings(data))
        items, nxt = tg.feeds.feed(user_id, n, cursor)
        # The API's own serialisation: --json gives exactly what GET /users/{id}/feed gives.
        body = {"results": _items(tg, items), "next_cursor": nxt, "model": tg.feeds.version}
    except TastegraphError as e:
        _fail(e)
    if as_json:
        _print_json(body)
        return
    out.print(_items_table(body["results"]))
    if nxt:
        err.print(f"next page: `tastegraph feed {user_id} --cursor {nxt}`")


def _items_table(results: list[dict[str, Any]]) -> Table:
    t = Table("pin", "title / tags", "score", "source", "reason")
    for r in results:
        pin = r["pin"]
        t.add_row(
            str(pin["id"]),
            escape(pin["title"] or ", ".join(pin["tags"][:3])),
            f"{r['score']:.3f}",
            escape(str(r["source"])),
            escape(str(r["reason"])),
        )
    return t


@app.command()
def related(
    pin_id: Annotated[int, typer.Argument(help="Pin id.", min=1, max=MAX_ID)],
    n: int = 20,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pins related to a pin (visual + co-engagement), with reasons."""
    from tastegraph.api.engagement import _items

    try:
        tg = _catalog(_settings(data))
        items = tg.feeds.related(pin_id, n)
        body = {"results": _items(tg, items)}  # as GET /pins/{id}/related gives it
    except TastegraphError as e:
        _fail(e)
    if as_json:
        _print_json(body)
        return
    out.print(_items_table(body["results"]))


@app.command()
def train(data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Fit the feed's learned models on the event log and publish a new version."""
    from tastegraph.cli_render import ranker_verdict, train_table
    from tastegraph.recs.feed import FeedParams

    try:
        res = _build(_settings(data)).feeds.train()
    except TastegraphError as e:
        _fail(e)
    fraction = FeedParams().train_fraction
    if as_json:
        _print_json({**res, "ranker_note": ranker_verdict(res, fraction)})
    else:
        out.print(train_table(res, fraction))


@app.command()
def simulate(
    users: Annotated[int, typer.Option(help="Simulated people.")] = 300,
    sessions: Annotated[int, typer.Option(help="Sessions per person.")] = 6,
    seed: int = 0,
    data: DataOpt = None,
    plot: Annotated[Path | None, typer.Option(help="Where the PNG plot goes.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A/B test feed policies (chronological, popular, tastegraph) on simulated people."""
    from tastegraph.recs.simulate import simulate as run

    try:
        vecs, boards, labels, where = _simulation_catalog(_settings(data), seed)
        err.print(f"catalog: {where}")
        plot = plot or Path(tempfile.gettempdir()) / f"tastegraph-simulate-{seed}.png"
        res = run(vecs, boards, labels, users=users, sessions=sessions, seed=seed, plot_path=plot)
    except TastegraphError as e:
        _fail(e)
    res["catalog"] = where
    if as_json:
        _print_json(res)
        return
    from tastegraph.cli_render import simulate_table

    out.print(simulate_table(res))
    if res.get("plot"):
        err.print(f"plot: {res['plot']}")


def _simulation_catalog(s: Settings, seed: int) -> tuple[Any, list[str], list[str], str]:
    """The data dir's catalog when it has one, else a clustered synthetic one (said so)."""
    import numpy as np

    if (s.data_dir / "tastegraph.db").exists():
        tg = _build(s)
        if tg.store.count_pins() >= 100:
            ids, mat, _ = tg.store.get_vectors("image")
            pins = tg.store.get_pins(ids.tolist())
            vecs = tg.indexes.to_index_space("image", mat)
            boards = [pins[int(i)].board for i in ids]
            labels = [pins[int(i)].labels[0][0] if pins[int(i)].labels else "" for i in ids]
            return vecs, boards, labels, f"{len(ids)} pins of {s.data_dir}"
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(24, 64))
    which = rng.integers(0, 24, 2400)
    vecs = centres[which] + 0.6 * rng.normal(size=(2400, 64))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    boards = [f"board-{w % 12}" for w in which]
    labels = [f"label-{w}" for w in which]
    where = "2400 synthetic pins in 24 visual clusters (no catalog of 100+ pins in the data dir)"
    return vecs.astype(np.float32), boards, labels, where


@events_app.command("import")
def events_import(
    file: Annotated[Path, typer.Argument(help="CSV or JSONL of events.")],
    data: DataOpt = None,
    as_json: JsonOpt = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Import engagement events; bad rows are reported, good ones kept. Exit 3 if any bad."""
    try:
        res = _build(_settings(data)).engagement.import_file(file, progress=progress)
    except TastegraphError as e:
        _fail(e)
    if as_json:
        _print_json(res)
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
    from tastegraph.recs.events import EventFilter

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
        tg = _build(_settings(data))
        where = _where(user, pin, kind, after, before, key, id_range, future, invalid)
        res = tg.engagement.stats() if where.is_empty() else tg.engagement.find(where, limit)
    except TastegraphError as e:
        _fail(e)
    if as_json:
        _print_json(res)
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
        tg = _build(_settings(data))
        where = _where(user, pin, kind, after, before, key, id_range, future, invalid, every)
        res = tg.engagement.delete(
            where, actor=(None, "local"), by=f"cli:{getpass.getuser()}", dry_run=dry_run
        )
    except TastegraphError as e:
        _fail(e)
    if as_json:
        _print_json(res)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
