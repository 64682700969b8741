"""Search commands: words (``search``) and images (``similar``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from tastegraph.cli.common import (
    MAX_ID,
    DataOpt,
    ExplainOpt,
    JsonOpt,
    app,
    fail,
    open_catalog,
    out,
    print_json,
    search_filters,
    settings_for,
)
from tastegraph.errors import InvalidInput, TastegraphError


def _print_page(tg: Any, page: Any, as_json: bool, explain: bool = False) -> None:
    from tastegraph.api.serialize import page_json

    body = page_json(tg.store, page, explain)
    if as_json:
        print_json(body)
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
        tg = open_catalog(settings_for(data))
        page = tg.search.text(
            query, limit=limit, offset=offset, filters=search_filters(board, tag, attr)
        )
        _print_page(tg, page, as_json, explain)
    except TastegraphError as e:
        fail(e)


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
    from tastegraph.imaging.limits import ImageLimits
    from tastegraph.imaging.read import read_source_bytes
    from tastegraph.search.service import parse_box

    try:
        if image and pin_id is not None:
            raise InvalidInput(
                "give a pin id or --image, not both",
                hint="`tastegraph similar PIN_ID` or `tastegraph similar --image FILE`",
            )
        region = parse_box(box)  # checked before any image is read
        tg = open_catalog(settings_for(data))
        f = search_filters(board, tag, None)
        if image:
            s = tg.settings
            raw = read_source_bytes(
                image,
                ImageLimits.from_settings(s),
                timeout=s.ingest.fetch_timeout_s,
                allow_url=True,
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
        fail(e)


def _pin_original(tg: Any, pin_id: int) -> bytes:
    """The file pin ``pin_id`` was ingested from, as it was then: a box is in its pixels."""
    from tastegraph.errors import ImageRejected
    from tastegraph.imaging.hashes import content_hash
    from tastegraph.imaging.limits import ImageLimits
    from tastegraph.imaging.read import read_source_bytes

    pin = tg.store.get_pin(pin_id)
    s = tg.settings
    other_way = "or search a region of a file: `tastegraph similar --image FILE --box x0,y0,x1,y1`"
    try:
        raw = read_source_bytes(
            pin.source,
            ImageLimits.from_settings(s),
            timeout=s.ingest.fetch_timeout_s,
            allow_url=True,
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
