"""Feed commands: home feed, related pins, training the ranker, simulation."""

from __future__ import annotations

import tempfile
from pathlib import Path
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
    err,
    fail,
    open_catalog,
    out,
    print_json,
    settings_for,
)
from tastegraph.errors import TastegraphError
from tastegraph.settings import Settings


@app.command()
def feed(
    user_id: Annotated[int, typer.Argument(help="User id.", min=1, max=MAX_ID)],
    n: int = 25,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A user's home feed, with the reason for each pin."""
    from tastegraph.api.serialize import feed_page_json

    try:
        tg = open_catalog(settings_for(data))
        items, nxt = tg.feeds.feed(user_id, n, cursor)
        # The API's own serialisation: --json gives exactly what GET /users/{id}/feed gives.
        body = feed_page_json(tg.store, items, nxt, tg.feeds.version)
    except TastegraphError as e:
        fail(e)
    if as_json:
        print_json(body)
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
    from tastegraph.api.serialize import related_json

    try:
        tg = open_catalog(settings_for(data))
        items = tg.feeds.related(pin_id, n)
        body = related_json(tg.store, items)  # as GET /pins/{id}/related gives it
    except TastegraphError as e:
        fail(e)
    if as_json:
        print_json(body)
        return
    out.print(_items_table(body["results"]))


@app.command()
def train(data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Fit the feed's learned models on the event log and publish a new version."""
    from tastegraph.cli.render import ranker_verdict, train_table

    s = settings_for(data)
    try:
        res = common.build_app(s).feeds.train()
    except TastegraphError as e:
        fail(e)
    fraction = s.feed.train_fraction
    if as_json:
        print_json({**res, "ranker_note": ranker_verdict(res, fraction)})
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
    from tastegraph.evaluation.simulator.run import simulate as run

    try:
        vecs, boards, labels, where = _simulation_catalog(settings_for(data), seed)
        err.print(f"catalog: {where}")
        plot = plot or Path(tempfile.gettempdir()) / f"tastegraph-simulate-{seed}.png"
        res = run(vecs, boards, labels, users=users, sessions=sessions, seed=seed, plot_path=plot)
    except TastegraphError as e:
        fail(e)
    res["catalog"] = where
    if as_json:
        print_json(res)
        return
    from tastegraph.cli.render import simulate_table

    out.print(simulate_table(res))
    if res.get("plot"):
        err.print(f"plot: {res['plot']}")


def _simulation_catalog(s: Settings, seed: int) -> tuple[Any, list[str], list[str], str]:
    """The data dir's catalog when it has one, else a clustered synthetic one (said so)."""
    import numpy as np

    if (s.data_dir / "tastegraph.db").exists():
        tg = common.build_app(s)
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
