"""The ``tastegraph`` command: one verb per capability, each calling the library function."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from tastegraph.errors import TastegraphError
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
app.add_typer(token_app, name="token")
app.add_typer(eval_app, name="eval")
app.add_typer(events_app, name="events")
app.add_typer(users_app, name="users")

err = Console(stderr=True)
out = Console()

EXIT_PARTIAL = 3  # ingest finished but some inputs were quarantined

DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data", envvar="TASTEGRAPH_DATA_DIR", help="Data dir (default ./tastegraph-data)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _settings(data: Path | None, **kw: Any) -> Settings:
    return get_settings(data_dir=data, **kw)


def _fail(e: TastegraphError) -> NoReturn:
    err.print(f"[bold red]error:[/] {e.message}")
    if e.hint:
        err.print(f"[yellow]hint:[/] {e.hint}")
    raise typer.Exit(1)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _build(s: Settings) -> Any:
    from tastegraph.app import build

    return build(s)


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="A folder, or a CSV/JSONL manifest.")],
    data: DataOpt = None,
    as_json: JsonOpt = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Add every image a folder or manifest names. Exit 3 when some inputs were rejected."""
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
        err.print(
            f"{d['status']}: {d['added']} added, {d['existing']} already known, "
            f"{d['skipped']} done before, {d['rejected']} rejected, "
            f"{d['near_duplicate_groups']} near-duplicate groups "
            f"({d['images_per_s']} img/s)"
        )
        for q in report.quarantine[:20]:
            err.print(f"  [red]rejected[/] {q.source}: {q.reason}: {q.message}")
        if len(report.quarantine) > 20:
            err.print(
                f"  … {len(report.quarantine) - 20} more: `tastegraph quarantine {d['run_id']}`"
            )
    if report.partial:
        raise typer.Exit(EXIT_PARTIAL)


def _print_page(tg: Any, page: Any, as_json: bool) -> None:
    from tastegraph.api.server import _page_json

    body = _page_json(tg, page)
    if as_json:
        _print_json(body)
        return
    t = Table("pin", "score", "title / tags", "signals")
    for r in body["results"]:
        pin = r["pin"]
        t.add_row(
            str(pin["id"]),
            f"{r['score']:.4f}",
            pin["title"] or ", ".join(pin["tags"][:3]),
            " ".join(f"{k}={v}" for k, v in r["signals"].items()),
        )
    out.print(t)
    out.print(f"{body['total']} results")


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
) -> None:
    """Words -> pins (BM25 fused with semantic text and image search)."""
    try:
        tg = _build(_settings(data))
        page = tg.search.text(query, limit=limit, offset=offset, filters=_filters(board, tag, attr))
        _print_page(tg, page, as_json)
    except TastegraphError as e:
        _fail(e)


@app.command()
def similar(
    pin_id: Annotated[int | None, typer.Argument(help="A pin id.")] = None,
    image: Annotated[
        str | None, typer.Option(help="An image file or URL instead of a pin.")
    ] = None,
    box: Annotated[str | None, typer.Option(help="x0,y0,x1,y1 region of --image.")] = None,
    data: DataOpt = None,
    limit: int = 20,
    offset: int = 0,
    board: str | None = None,
    tag: str | None = None,
    as_json: JsonOpt = False,
) -> None:
    """Image -> pins: more like a pin, an image file or URL, or a region of one."""
    from tastegraph.catalog.images import ImageLimits, read_source_bytes
    from tastegraph.search.service import parse_box

    try:
        tg = _build(_settings(data))
        f = _filters(board, tag, None)
        if image:
            s = tg.settings
            raw = read_source_bytes(
                image, ImageLimits.from_settings(s), timeout=s.fetch_timeout_s, allow_url=True
            )
            page = tg.search.by_image(
                raw, box=parse_box(box), limit=limit, offset=offset, filters=f
            )
        elif pin_id is not None:
            page = tg.search.similar(pin_id, limit=limit, offset=offset, filters=f)
        else:
            raise typer.BadParameter("give a pin id or --image")
        _print_page(tg, page, as_json)
    except TastegraphError as e:
        _fail(e)


@app.command()
def duplicates(data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """List near-duplicate groups."""
    try:
        tg = _build(_settings(data))
        groups = tg.search.duplicates()
    except TastegraphError as e:
        _fail(e)
    if as_json:
        _print_json({"groups": groups, "total": len(groups)})
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
    if as_json:
        _print_json([r.__dict__ for r in rows])
        return
    for r in rows:
        out.print(f"{r.run_id} {r.source}: {r.reason}: {r.message}")


@app.command()
def reindex(
    data: DataOpt = None,
    refit: Annotated[bool, typer.Option(help="Refit the image whitening first.")] = False,
) -> None:
    """Rebuild the vector indexes from the vectors kept in the store."""
    import shutil

    try:
        s = _settings(data)
        tg = _build(s)
        shutil.rmtree(s.data_dir / "indexes" / s.index_kind, ignore_errors=True)
        if refit:
            tg.fit_projection(force=True)
        applied = tg.indexes.sync(save=True)
        tg.fit_projection()
        tg.indexes.sync(save=True)
        err.print(f"indexed: {applied}")
    except TastegraphError as e:
        _fail(e)


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
def token_revoke(token_id: int, data: DataOpt = None) -> None:
    """Revoke a token."""
    try:
        _build(_settings(data)).store.revoke_token(token_id)
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
    _print_json(res) if as_json else out.print(res)


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
    _print_json(res) if as_json else out.print(res)


@eval_app.command("recs")
def eval_recs(
    dataset: Annotated[Path, typer.Option(help="MovieLens folder or user,item,time CSV/TSV.")],
    protocol: Annotated[str, typer.Option(help="loo or temporal")] = "loo",
    seed: int = 0,
    out_dir: Annotated[Path | None, typer.Option(help="Where the plot goes.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The served feed engine against popularity, ItemKNN, EASE, ALS and BPR (and the
    offline-only tastegraph model, for reference)."""
    from tastegraph.recs.evaluate import evaluate_recs

    try:
        res = evaluate_recs(dataset, protocol, seed=seed, out_dir=out_dir, progress=True)
    except TastegraphError as e:
        _fail(e)
    _print_json(res) if as_json else out.print(res)


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
    user_id: Annotated[int, typer.Argument(help="Owner's user id.")],
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


@app.command()
def save(
    board_id: Annotated[int, typer.Argument(help="Board id.")],
    pin_id: Annotated[int, typer.Argument(help="Pin id.")],
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
    user_id: Annotated[int, typer.Argument(help="User id.")],
    n: int = 25,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A user's home feed, with the reason for each pin."""
    try:
        tg = _build(_settings(data))
        items, nxt = tg.feeds.feed(user_id, n, cursor)
        pins = tg.store.get_pins([it.pin for it in items])
    except TastegraphError as e:
        _fail(e)
    rows = [
        {
            "pin": it.pin,
            "title": pins[it.pin].title,
            "score": round(it.score, 4),
            "reason": it.reason,
            "source": it.source,
        }
        for it in items
    ]
    if as_json:
        _print_json({"results": rows, "next_cursor": nxt})
        return
    t = Table("pin", "score", "source", "reason")
    for r in rows:
        t.add_row(str(r["pin"]), f"{r['score']:.3f}", str(r["source"]), str(r["reason"]))
    out.print(t)


@app.command()
def related(
    pin_id: Annotated[int, typer.Argument(help="Pin id.")],
    n: int = 20,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pins related to a pin (visual + co-engagement), with reasons."""
    try:
        tg = _build(_settings(data))
        items = tg.feeds.related(pin_id, n)
    except TastegraphError as e:
        _fail(e)
    rows = [
        {"pin": it.pin, "score": round(it.score, 4), "reason": it.reason, "source": it.source}
        for it in items
    ]
    if as_json:
        _print_json({"results": rows})
        return
    for r in rows:
        out.print(f"{r['pin']}\t{r['score']}\t{r['reason']}")


@app.command()
def train(data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Fit the feed's learned models on the event log and publish a new version."""
    try:
        res = _build(_settings(data)).feeds.train()
    except TastegraphError as e:
        _fail(e)
    _print_json(res) if as_json else out.print(res)


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
    _print_json(res) if as_json else out.print(res)


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
        for row in res["errors"][:20]:
            err.print(f"  [red]row {row['row']}[/]: {row['message']}")
    if res["rejected"]:
        raise typer.Exit(EXIT_PARTIAL)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
