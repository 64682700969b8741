"""Serving and measuring: serve, demo, eval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tastegraph.cli.common import (
    DataOpt,
    JsonOpt,
    app,
    eval_app,
    fail,
    out,
    print_json,
    settings_for,
)
from tastegraph.cli.render import dict_table
from tastegraph.errors import TastegraphError
from tastegraph.settings import get_settings


@app.command()
def serve(
    data: DataOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes on the same port; each holds its own indexes and feed "
            "engine and reads the others' writes.",
        ),
    ] = 1,
) -> None:
    """Serve the API and the web page until Ctrl-C."""
    from tastegraph.server import run_server

    try:
        run_server(settings_for(data, host=host, port=port), workers=workers)
    except TastegraphError as e:
        fail(e)


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
        run_demo(settings_for(data, host=host, port=port), images=images, serve=serve_after)
    except TastegraphError as e:
        fail(e)


# The evaluation builds its own catalog: in a temporary SQLite file, or in this empty store
# (never the configured TASTEGRAPH_STORE_URL, whose catalog it would mix its images into).
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Build the evaluation catalog in this EMPTY store (e.g. postgresql+psycopg://...) "
        "instead of a temporary SQLite file.",
    ),
]


@eval_app.command("retrieval")
def eval_retrieval(
    images: Annotated[Path, typer.Option(help="Folder of images.")],
    labels: Annotated[Path, typer.Option(help="CSV with image,label columns.")],
    data: Annotated[Path | None, typer.Option(help="Keep the evaluation catalog here.")] = None,
    index: Annotated[str | None, typer.Option(help="auto, hnsw, ivf or exact.")] = None,
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
    store: StoreOpt = None,
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
            store_url=store,
        )
    except TastegraphError as e:
        fail(e)
    print_json(res) if as_json else out.print(dict_table(res, "image retrieval"))


@eval_app.command("captions")
def eval_captions(
    images: Annotated[Path, typer.Option(help="Folder of images.")],
    captions: Annotated[Path, typer.Option(help="CSV with image,caption columns.")],
    data: Annotated[Path | None, typer.Option(help="Keep the evaluation catalog here.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Words -> image retrieval quality: R@1, R@5, R@10 (one relevant image per caption)."""
    from tastegraph.evaluation import evaluate_captions

    try:
        res = evaluate_captions(
            images, captions, settings=get_settings(), data_dir=data, store_url=store
        )
    except TastegraphError as e:
        fail(e)
    print_json(res) if as_json else out.print(dict_table(res, "caption retrieval"))


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
    from tastegraph.evaluation.recs.evaluate import evaluate_recs

    try:
        res = evaluate_recs(dataset, protocol, seed=seed, out_dir=out_dir, progress=True)
    except TastegraphError as e:
        fail(e)
    print_json(res) if as_json else out.print(dict_table(res, "recommenders"))
