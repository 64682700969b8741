"""Search: image -> pins, words -> pins (BM25 + semantic, fused), near-duplicate groups."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.domain import Hit
from tastegraph.eligibility import Context, Eligibility
from tastegraph.errors import InvalidInput
from tastegraph.imaging.decode import decode_image
from tastegraph.imaging.geometry import crop
from tastegraph.imaging.limits import ImageLimits
from tastegraph.imaging.read import read_source_bytes
from tastegraph.models.base import Encoders
from tastegraph.models.inputs import preprocess_for
from tastegraph.search.fusion import reciprocal_rank_fusion
from tastegraph.search.ports import SearchIndexes, SearchStore
from tastegraph.settings import Settings

__all__ = ["Filters", "Page", "SearchService", "parse_box", "parse_filters"]

MAX_RESULTS = 1000


@dataclass
class Filters:
    board: str | None = None
    tag: str | None = None
    attributes: dict[str, str] | None = None


@dataclass
class Page:
    """One page of results.

    ``total`` is how many results the query has in all when the search saw them all (every
    candidate list ended before the depth it asked for), else None: a ranked search stops at a
    depth, and that depth is not a count of anything (it used to be shown as "200 results").
    """

    hits: list[Hit]
    total: int | None
    offset: int
    limit: int
    more: bool = False  # whether results exist past this page

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.more else None


def parse_filters(board: str | None, tag: str | None, attr: list[str] | None) -> Filters | None:
    """Filters from ``board``, ``tag`` and ``key:value`` attribute strings; None when empty."""
    attributes: dict[str, str] = {}
    for a in attr or []:
        key, sep, value = a.partition(":")
        if not sep or not key:
            raise InvalidInput(
                f"bad attribute filter {a!r}",
                hint="use attr=key:value",
                cli_hint="use --attr key:value, e.g. --attr colour:red",
            )
        attributes[key] = value
    if not board and not tag and not attributes:
        return None
    return Filters(board=board or None, tag=tag or None, attributes=attributes or None)


_BOX_HINT = "use box=x0,y0,x1,y1 in pixels"
_BOX_CLI_HINT = "use --box x0,y0,x1,y1 in pixels of the image, e.g. --box 120,40,380,300"


def parse_box(box: str | None) -> tuple[float, float, float, float] | None:
    """``"x0,y0,x1,y1"`` (pixels) -> a box; None when empty."""
    if not box:
        return None
    try:
        parts = tuple(float(x) for x in box.split(","))
    except ValueError as exc:
        raise InvalidInput(f"bad box {box!r}", hint=_BOX_HINT, cli_hint=_BOX_CLI_HINT) from exc
    if len(parts) != 4:
        raise InvalidInput(f"bad box {box!r}", hint=_BOX_HINT, cli_hint=_BOX_CLI_HINT)
    return parts[0], parts[1], parts[2], parts[3]


def _check_page(offset: int, limit: int) -> None:
    if limit < 1 or limit > 200:
        raise InvalidInput("limit must be between 1 and 200")
    if offset < 0 or offset >= MAX_RESULTS:
        raise InvalidInput(f"offset must be between 0 and {MAX_RESULTS - 1}")


def _depth(offset: int, limit: int, at_least: int = 0) -> int:
    """How many candidates to fetch: one past the page, so "is there more" has an answer."""
    return min(MAX_RESULTS, max(at_least, offset + limit + 1))


def _page(
    hits: list[Hit], offset: int, limit: int, *, complete: bool = True, found: int | None = None
) -> Page:
    """The page of ``hits``; ``complete`` says no candidate list was cut at its depth, and
    ``found`` how many results there are when ``hits`` holds only the first of them."""
    _check_page(offset, limit)
    end = min(offset + limit, MAX_RESULTS)
    total = (len(hits) if found is None else found) if complete else None
    return Page(hits[offset:end], total, offset, limit, more=len(hits) > end)


class SearchService:
    """The one entry point for every kind of search; the API and CLI only translate.

    ``indexes`` and ``encoders`` are providers, called on first need: a service made by a
    command that never searches loads neither.
    """

    def __init__(
        self,
        store: SearchStore,
        indexes: Callable[[], SearchIndexes],
        encoders: Callable[[], Encoders],
        settings: Settings,
        eligibility: Eligibility | None = None,
    ) -> None:
        self.store = store
        self._indexes = indexes
        self._encoders = encoders
        self.settings = settings
        self.eligibility = eligibility or Eligibility()

    # ----------------------------------------------------------- image -> pins
    def _allowed(self, filters: Filters | None) -> NDArray[np.int64] | None:
        if filters is None:
            return None
        return self.store.filter_ids(
            board=filters.board, tag=filters.tag, attributes=filters.attributes
        )

    def _visible(self, hits: list[tuple[int, float]], ctx: Context) -> list[tuple[int, float]]:
        """``hits`` the eligibility rule lets this viewer see (order kept)."""
        if not hits or not self.eligibility.rules:
            return hits
        ok = self.eligibility.mask(np.array([p for p, _ in hits], np.int64), ctx)
        return [h for h, keep in zip(hits, ok, strict=True) if keep]

    def _excluded(self, exclude: list[int] | None, ctx: Context) -> NDArray[np.int64] | None:
        """The ids a vector search leaves out: the caller's and those no one may see."""
        out = np.array(exclude or [], np.int64)
        ruled = self.eligibility.excluded(ctx)
        if ruled is not None:
            out = np.union1d(out, ruled).astype(np.int64)
        return out if len(out) else None

    def _image_search(
        self,
        query: NDArray[np.float32],
        *,
        limit: int,
        offset: int,
        filters: Filters | None,
        exclude: list[int] | None = None,
    ) -> Page:
        _check_page(offset, limit)
        idx = self._indexes().get("image")
        want = _depth(offset, limit)
        allow = self._allowed(filters)
        if allow is not None and len(allow) == 0:
            return _page([], offset, limit)
        ctx = Context(now=time.time())
        s = self.settings
        depth = s.search.rerank_depth if s.search.query_expansion > 0 else 0
        ex = self._excluded(exclude, ctx)
        asked = max(want, depth)
        scores, ids = idx.search(query, asked, allow=allow, exclude=ex)
        found = int((ids[0] >= 0).sum())
        if depth > 0:
            scores, ids = self._rerank(idx, query, scores, ids, depth, s.search.query_expansion)
        scores, ids = scores[:, :want], ids[:, :want]
        ranked = [(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=False) if i >= 0]
        hits = [Hit(i, s, {"image": round(s, 4)}) for i, s in self._visible(ranked, ctx)]
        return _page(hits, offset, limit, complete=found < asked, found=found)

    @staticmethod
    def _rerank(
        idx: Any,
        query: NDArray[np.float32],
        scores: NDArray[np.float32],
        ids: NDArray[np.int64],
        depth: int,
        k: int,
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Re-score the top ``depth`` candidates by database-side augmentation (see rerank);
        the query's own photo, when the catalog has it, stays first."""
        from tastegraph.search.rerank import dba_rerank, same_photo_first

        cids = ids[0][ids[0] >= 0]
        head = min(len(cids), depth)
        if head == 0:
            return scores, ids
        hv = idx.get(cids[:head])
        # Neighbours come from the whole catalog (no filter): they describe each candidate.
        ns, nid = idx.search(hv, k + 1)
        safe = np.where(nid >= 0, nid, cids[0])
        nv = idx.get(safe.ravel()).reshape(*nid.shape, -1)
        new = dba_rerank(query[0], hv, cids[:head], nv, nid, ns, alpha=3.0, k=k, query_k=k)
        order, head_scores = same_photo_first(hv @ query[0], new)
        tail = np.minimum(scores[0][head : len(cids)], head_scores.min())  # keep them descending
        out_ids = np.concatenate([cids[:head][order], cids[head:]])[None]
        out_scores = np.concatenate([head_scores, tail]).astype(np.float32)[None]
        return out_scores, out_ids

    def similar(
        self, pin_id: int, *, limit: int = 20, offset: int = 0, filters: Filters | None = None
    ) -> Page:
        """Pins that look like pin ``pin_id`` ("more like this"), itself excluded."""
        self.store.get_pin(pin_id)  # NotFound for unknown ids
        q = self._indexes().vector_of("image", pin_id)
        return self._image_search(q, limit=limit, offset=offset, filters=filters, exclude=[pin_id])

    def by_image(
        self,
        data: bytes,
        *,
        box: tuple[float, float, float, float] | None = None,
        limit: int = 20,
        offset: int = 0,
        filters: Filters | None = None,
        exclude: list[int] | None = None,
    ) -> Page:
        """Pins that look like an uploaded image, or like the region ``box`` inside it
        (``exclude``: pins left out, e.g. the pin whose image it is)."""
        q = self.encode_query_image(data, box=box)
        return self._image_search(q, limit=limit, offset=offset, filters=filters, exclude=exclude)

    def by_url(self, url: str, **kw: Any) -> Page:
        s = self.settings
        data = read_source_bytes(
            url,
            ImageLimits.from_settings(s),
            timeout=s.ingest.fetch_timeout_s,
            allow_url=s.api.allow_url_fetch,
            allow_private_hosts=s.api.allow_private_url_hosts,
            allow_local_files=False,  # refs from users never read the server's disk
        )
        return self.by_image(data, **kw)

    def encode_query_image(
        self, data: bytes, *, box: tuple[float, float, float, float] | None = None
    ) -> NDArray[np.float32]:
        limits = ImageLimits.from_settings(self.settings)
        enc = self._encoders().image
        # A crop needs full resolution; a whole image only needs the model's input size.
        draft = max(self.settings.ingest.thumbnail_size, int(enc.input_size))
        dec = decode_image(data, limits, draft_to=None if box else draft)
        image = crop(dec.image, box, (dec.width, dec.height)) if box else dec.image
        out = enc.encode(preprocess_for(enc)(image)[None])
        return self._indexes().to_index_space("image", out.features)

    # ----------------------------------------------------------- words -> pins
    def text(
        self, query: str, *, limit: int = 20, offset: int = 0, filters: Filters | None = None
    ) -> Page:
        """BM25 over title/description/tags fused with semantic search over text and images."""
        query = query.strip()
        if not query:
            raise InvalidInput(
                "the query is empty",
                hint="pass some words, e.g. ?q=red+dress",
                cli_hint='pass some words, e.g. tastegraph search "red dress"',
            )
        if len(query) > 1000:
            raise InvalidInput("the query is longer than 1000 characters")
        s = self.settings
        allow = self._allowed(filters)
        if allow is not None and len(allow) == 0:
            return _page([], offset, limit)
        allowed_set = set(allow.tolist()) if allow is not None else None
        _check_page(offset, limit)
        depth = _depth(offset, limit, at_least=200)
        lists: dict[str, list[tuple[int, float]]] = {}
        bm25_depth = depth if allowed_set is None else MAX_RESULTS
        bm25 = self.store.fts_search(query, bm25_depth)
        # A list cut at its depth may have more matches than it returned: the count is unknown.
        complete = len(bm25) < bm25_depth
        ctx = Context(now=time.time())
        bm25 = [(p, sc) for p, sc in bm25 if allowed_set is None or p in allowed_set]
        lists["bm25"] = self._visible(bm25, ctx)
        ex = self._excluded(None, ctx)
        enc = self._encoders()
        indexes = self._indexes()
        for space, vec, floor in (
            ("text", enc.text.encode([query]), s.search.text_floor),
            ("image_text", enc.bridge.encode_query([query]), s.search.conse_floor),
        ):
            index_space = "conse" if space == "image_text" else space
            idx = indexes.get(index_space)
            if len(idx) == 0:
                continue
            scores, ids = idx.search(vec, depth, allow=allow, exclude=ex)
            lists[space] = [
                (int(i), float(sc))
                for sc, i in zip(scores[0], ids[0], strict=False)
                if i >= 0 and sc >= floor
            ]
            complete = complete and len(lists[space]) < depth
        hits = reciprocal_rank_fusion(lists)
        return _page(hits, offset, limit, complete=complete)

    # ---------------------------------------------------------- duplicates
    def duplicates(self) -> list[list[int]]:
        """Near-duplicate groups (each a list of pin ids, the group's smallest id first)."""
        return list(self.store.dup_groups().values())
