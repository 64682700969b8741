"""Catalog commands: ingest, reindex, duplicates, quarantine."""

from __future__ import annotations

from typing import Annotated, Any

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
from tastegraph.errors import TastegraphError


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
        tg = common.build_app(settings_for(data))
        try:
            report = run(tg, source, progress=progress)
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
        print_json({"groups": [{"group": g[0], "pins": g} for g in groups], "total": len(groups)})
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
        print_json({"results": [r.__dict__ for r in rows], "total": len(rows)})
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

    from tastegraph.cli.render import index_table

    try:
        s = settings_for(data)
        tg = common.build_app(s)
        done = _reencode(tg, as_json) if reencode else None
        if done is not None and done.failed:
            if as_json:
                print_json({"reencode": done.to_dict()})
            raise typer.Exit(EXIT_PARTIAL)
        shutil.rmtree(s.data_dir / "indexes" / s.index.kind, ignore_errors=True)
        if refit:
            tg.fit_projection(force=True)
        applied = tg.indexes.sync(save=True)
        if tg.fit_projection():  # the image index was dropped for the new projection
            applied["image"] = tg.indexes.sync(save=True)["image"]
        stats = tg.indexes.stats()
    except TastegraphError as e:
        fail(e)
    if as_json:
        extra = {"reencode": done.to_dict()} if done is not None else {}
        print_json({"indexes": stats, "applied": applied, **extra})
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
