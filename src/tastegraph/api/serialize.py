"""One serializer per resource: what the API (and the CLI's ``--json``) answers for each.

Pins, search hits and pages, feed items (with the pin their reason names), users, boards,
events, tokens, ingest rejections and near-duplicate groups. Routes and commands build their
bodies here, so a pin is the same JSON wherever it appears.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from tastegraph.api.models import thumbnail_url

if TYPE_CHECKING:
    from tastegraph.domain import Hit, Pin, QuarantineEntry
    from tastegraph.search.service import Page
    from tastegraph.store import SQLStore, TokenInfo

__all__ = [
    "FeedItemLike",
    "PinRecords",
    "audit_json",
    "because_json",
    "board_json",
    "duplicates_json",
    "event_json",
    "feed_items_json",
    "feed_page_json",
    "hit_json",
    "page_json",
    "pin_json",
    "pins_json",
    "quarantine_json",
    "related_json",
    "token_json",
    "user_json",
]

JSON = dict[str, Any]


class PinRecords(Protocol):
    """Where pins' records come from: the store, or the serving process's cache of them."""

    def pin_records(self, ids: Iterable[int]) -> list[tuple[Any, ...]]: ...


class FeedItemLike(Protocol):
    """A served pin as the feed engine gives it (``FeedItem``)."""

    @property
    def pin(self) -> int: ...
    @property
    def score(self) -> float: ...
    @property
    def reason(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def because(self) -> int | None: ...


# --------------------------------------------------------------------------------------- pins
def pin_json(pin: Pin) -> JSON:
    """A pin, with the URL of its thumbnail (versioned by content)."""
    d = pin.to_dict()
    d["thumbnail_url"] = thumbnail_url(pin.id, pin.content_hash)
    return d


def pins_json(store: PinRecords, ids: Iterable[int]) -> dict[int, JSON]:
    """``pin_json(pin)`` of each of these pins that exists, by id.

    The feed routes need 20 to 100 pins per request: plain rows (``store.pin_records``, in the
    order of ``Pin.to_dict``; tests/integration/feed/test_feed_api.py checks the result equals
    ``pin_json(store.get_pin(id))``) and JSON built straight from them cost a third of going
    through ``store.get_pins`` and ``Pin`` objects (2 ms of a 9 ms related-pins request).
    """
    rows = store.pin_records(ids)
    out: dict[int, JSON] = {}
    for r in rows:
        pid = int(r[0])
        out[pid] = {
            "id": pid,
            "content_hash": r[1],
            "title": r[2],
            "description": r[3],
            "link": r[4],
            "board": r[5],
            "tags": list(r[6] or []),
            "labels": [{"label": str(a), "score": round(float(b), 4)} for a, b in (r[7] or [])],
            "attributes": dict(r[8] or {}),
            "source": r[9],
            "phash": r[10],
            "width": r[11],
            "height": r[12],
            "format": r[13],
            "dup_group": r[14],
            "created_at": r[15],
            "updated_at": r[16],
            "thumbnail_url": thumbnail_url(pid, r[1]),
        }
    return out


# ------------------------------------------------------------------------------------- search
def hit_json(hit: Hit, pin: Pin, explain: bool = False) -> JSON:
    """A search result: the pin and its score (and per-signal scores with ``explain``)."""
    # Per-signal scores are for people tuning search, not for everyone's cards.
    out: JSON = {"pin": pin_json(pin), "score": round(hit.score, 6)}
    if explain:
        out["signals"] = hit.signals
    return out


def page_json(store: SQLStore, page: Page, explain: bool = False) -> JSON:
    """A page of search results, their pins fetched in one call (pins gone since are left out)."""
    pins = store.get_pins([h.pin_id for h in page.hits])
    return {
        "results": [hit_json(h, pins[h.pin_id], explain) for h in page.hits if h.pin_id in pins],
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "next_offset": page.next_offset,
    }


def duplicates_json(groups: Sequence[Sequence[int]]) -> JSON:
    """Near-duplicate groups, each named by its first pin."""
    return {"groups": [{"group": g[0], "pins": list(g)} for g in groups], "total": len(groups)}


# --------------------------------------------------------------------------------------- feed
def because_json(pin_id: int | None, pins: Mapping[int, JSON]) -> JSON | None:
    """The pin a reason names, for a thumbnail beside "because you saved this pin" (versioned by
    content like every thumbnail URL); none when that pin is gone."""
    if pin_id is None or pin_id not in pins:
        return None
    return {"pin_id": pin_id, "thumbnail_url": thumbnail_url(pin_id, pins[pin_id]["content_hash"])}


def feed_items_json(
    store: PinRecords, items: Sequence[FeedItemLike], pins: Mapping[int, JSON] | None = None
) -> list[JSON]:
    """Feed items, their pins (and the pins their reasons name) fetched in one query, less
    those in ``pins`` already; items whose pin is gone are left out."""
    known = dict(pins or {})
    wanted = {it.pin for it in items} | {it.because for it in items if it.because is not None}
    known.update(pins_json(store, wanted - known.keys()))
    return [
        {
            "pin": known[it.pin],
            "score": round(float(it.score), 6),
            "reason": it.reason,
            "source": it.source,
            "because": because_json(it.because, known),
        }
        for it in items
        if it.pin in known
    ]


def feed_page_json(
    store: PinRecords, items: Sequence[FeedItemLike], next_cursor: str | None, model: str | None
) -> JSON:
    """A page of a home feed: items, the cursor of the next page, the model that ranked it."""
    return {"results": feed_items_json(store, items), "next_cursor": next_cursor, "model": model}


def related_json(
    store: PinRecords, items: Sequence[FeedItemLike], pins: Mapping[int, JSON] | None = None
) -> JSON:
    """Related pins."""
    return {"results": feed_items_json(store, items, pins)}


# ------------------------------------------------------------------------------------- people
def user_json(user: Mapping[str, Any], boards: Sequence[Mapping[str, Any]] | None = None) -> JSON:
    """A user (with their boards when given)."""
    out = dict(user)
    if boards is not None:
        out["boards"] = [board_json(b) for b in boards]
    return out


def board_json(board: Mapping[str, Any]) -> JSON:
    """A board (with its pins' ids when the store gave them)."""
    return dict(board)


def event_json(event: Mapping[str, Any]) -> JSON:
    """A logged engagement event, as the store keeps it."""
    return dict(event)


# -------------------------------------------------------------------------------------- admin
def token_json(token: TokenInfo, secret: str | None = None) -> JSON:
    """A token (its secret only when just created)."""
    out = dict(token.__dict__)
    return {"token": secret, **out} if secret is not None else out


def quarantine_json(rows: Sequence[QuarantineEntry]) -> JSON:
    """What ingest rejected, with the reason."""
    return {"results": [dict(q.__dict__) for q in rows], "total": len(rows)}


def audit_json(entries: Sequence[Mapping[str, Any]]) -> JSON:
    """Audit log entries."""
    return {"results": [dict(e) for e in entries]}
