"""Search counts are real or absent (issue 15, defect 7); raw scores only on request.

A ranked search fetches candidates to a depth (200 at least); that depth used to be reported as
"200 results" for almost any query. ``total`` is now the exact number of results when the search
saw them all, else null, and paging (``next_offset``) still says whether there is more.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tastegraph.app import App
from tastegraph.search.service import Page

WORDS = ["linen", "dress", "red", "boot", "wool", "coat"]


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256)).save(
        buf, "JPEG"
    )
    return buf.getvalue()


def _catalog(app: App, titles: list[str]) -> None:
    from tastegraph.catalog.sources import SourceItem

    items = [SourceItem(ref=f"p{i}.jpg", title=t) for i, t in enumerate(titles)]
    data = {it.ref: _jpeg(i) for i, it in enumerate(items)}
    app.catalog.ingest_items(items, source_label="t", progress=False, data=data)


@pytest.fixture
def small(fake_app: App) -> Iterator[App]:
    _catalog(fake_app, [f"{WORDS[i % 6]} {WORDS[(i * 5 + 1) % 6]} {i}" for i in range(14)])
    yield fake_app


def _all_pages(search: object, limit: int) -> tuple[list[int], list[Page]]:
    ids: list[int] = []
    pages: list[Page] = []
    offset: int | None = 0
    while offset is not None:
        page = search(limit=limit, offset=offset)  # type: ignore[operator]
        pages.append(page)
        ids += [h.pin_id for h in page.hits]
        offset = page.next_offset
    return ids, pages


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    words=st.lists(st.sampled_from([*WORDS, "velvet", "quantum"]), min_size=1, max_size=3),
    limit=st.integers(1, 6),
    kind=st.sampled_from(["text", "similar"]),
)
def test_a_total_is_what_paging_finds(small: App, words: list[str], limit: int, kind: str) -> None:
    """Whenever a total is given, paging to the end yields exactly that many distinct pins."""
    if kind == "text":
        ids, pages = _all_pages(lambda **kw: small.search.text(" ".join(words), **kw), limit)
    else:
        ids, pages = _all_pages(lambda **kw: small.search.similar(len(words), **kw), limit)
    assert len(ids) == len(set(ids))
    totals = {p.total for p in pages}
    assert len(totals) == 1
    (total,) = totals
    assert total is not None  # a catalog this small is always seen whole
    assert total == len(ids)
    if kind == "similar":  # image search ranks every other pin
        assert total == 13
    assert all(len(p.hits) == limit for p in pages[:-1])


def test_a_search_cut_at_its_depth_gives_no_count(fake_app: App) -> None:
    _catalog(fake_app, [f"summer dress {i}" for i in range(230)])
    page = fake_app.search.text("dress", limit=20)
    assert page.total is None  # was 200: the depth, not a count
    assert page.next_offset == 20 and len(page.hits) == 20
    last = fake_app.search.text("dress", limit=20, offset=200)
    assert last.total is None and last.hits
    # Image search ranks the whole catalog: the same holds past its depth.
    sim = fake_app.search.similar(1, limit=10)
    assert sim.total is None and sim.next_offset == 10


def test_scores_per_signal_only_on_request(small: App, capsys: pytest.CaptureFixture[str]) -> None:
    from tastegraph.api.serialize import page_json
    from tastegraph.cli.search import _print_page

    page = small.search.text("linen dress", limit=3)
    assert all("signals" not in r for r in page_json(small.store, page)["results"])
    assert all(
        "bm25" in r["signals"] for r in page_json(small.store, page, explain=True)["results"]
    )
    _print_page(small, page, False)
    plain = capsys.readouterr().out
    assert "bm25" not in plain and "image_text" not in plain
    assert f"{page.total} results" in plain
    _print_page(small, page, False, explain=True)
    assert "bm25=" in capsys.readouterr().out
