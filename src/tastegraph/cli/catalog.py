"""Catalog commands: ingest, reindex, duplicates, quarantine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from tastegraph.cli import common
from tastegraph.cli.common import (
    EXIT_EMPTY,
    EXIT_PARTIAL,
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
from tastegraph.errors import InvalidInput, TastegraphError

if TYPE_CHECKING:
    from tastegraph.catalog.pipeline.ray_runner import RayRunner
    from tastegraph.catalog.reencode import ReencodeReport

RayOpt = Annotated[
    bool,
    typer.Option(
        "--ray",
        help="Run decode and encode as Ray Data stages, on a local Ray started for the run "
        "(or on the cluster --ray-address names). Needs `pip install 'tastegraph[ray]'`.",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="ADDRESS",
        help="Run on the Ray cluster at ADDRESS (HOST:PORT of its head, ray://HOST:10001 for "
        "Ray Client, or auto); implies --ray.",
    ),
]
RayActorsOpt = Annotated[
    int,
    typer.Option("--ray-actors", min=1, help="With --ray: encoder actors (each loads the models)."),
]


def _ray_runner(on_ray: bool, address: str | None, actors: int) -> RayRunner | None:
    """The Ray runner ``--ray`` asks for (``None`` without it); a missing extra fails here."""
    if not on_ray and address is None:
        return None
    from tastegraph.catalog.pipeline.ray_runner import RayRunner
    from tastegraph.catalog.pipeline.ray_session import RayOptions, check_answers, import_ray

    # Before any work (even when nothing turns out to need doing): one line naming the extra,
    # or the address that does not answer.
    import_ray()
    options = RayOptions(address=address, actors=actors)
    if not options.local and options.address is not None:
        check_answers(options.address)
    return RayRunner(options)


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="A folder, or a CSV/JSONL manifest.")],
    data: DataOpt = None,
    as_json: JsonOpt = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = 2,
) -> None:
    """Add every image a folder or manifest names; a manifest row for an image already in the
    catalog updates its words. Exit 3 when some inputs were rejected, 4 when the source is empty.
    """
    try:
        runner = _ray_runner(ray, ray_address, ray_actors)
        tg = common.build_app(settings_for(data))
        try:
            report = tg.catalog.ingest(source, progress=progress, runner=runner)
        finally:
            tg.close()
    except TastegraphError as e:
        fail(e)
    d = report.to_dict()
    if as_json:
        print_json(d)
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


@app.command()
def duplicates(data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """List near-duplicate groups."""
    try:
        tg = open_catalog(settings_for(data))
        groups = tg.search.duplicates()
    except TastegraphError as e:
        fail(e)
    if as_json:  # as GET /duplicates gives it
        from tastegraph.api.serialize import duplicates_json

        print_json(duplicates_json(groups))
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
    tg = common.build_app(settings_for(data))
    rows = tg.store.quarantine_report(run_id)
    if as_json:  # as GET /quarantine gives it
        from tastegraph.api.serialize import quarantine_json

        print_json(quarantine_json(rows))
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
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = 2,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild the vector indexes from the vectors kept in the store. Exit 3 when some pins
    could not be re-encoded (the indexes are then left as they were)."""
    from rich.progress import Progress

    from tastegraph.cli.render import index_table

    try:
        runner = _ray_runner(ray, ray_address, ray_actors)
        if runner is not None and not reencode:
            raise InvalidInput(
                "--ray runs the re-encoding: it needs --reencode",
                hint="run `tastegraph reindex --reencode --ray`, or leave out --ray",
            )
        reencoder = None
        if runner is not None:
            from tastegraph.catalog.pipeline.ray_reencode import RayReencoder

            reencoder = RayReencoder(runner.options)
        tg = common.build_app(settings_for(data))
        with Progress(console=err, transient=True, disable=as_json or not reencode) as bar:
            task = bar.add_task("re-encoding pins with the current models", total=None)
            done = tg.catalog.reindex(
                refit=refit,
                reencode=reencode,
                on_batch=lambda n, total: bar.update(task, completed=n, total=total),
                reencoder=reencoder,
            )
    except TastegraphError as e:
        fail(e)
    if done.reencode is not None:
        _say_reencoded(done.reencode, as_json)
    if as_json:
        print_json(done.to_dict())
    elif done.rebuilt:
        out.print(index_table(done.stats))
    if not done.rebuilt:
        raise typer.Exit(EXIT_PARTIAL)


def _say_reencoded(rep: ReencodeReport, as_json: bool) -> None:
    """What ``reindex --reencode``'s first step did, on stderr."""
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
