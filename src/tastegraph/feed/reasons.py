"""The words of feed reasons: they name what the person actually saved, in words people wrote.

A reason names a pin by its title when someone gave it one, else by its board ("a pin from
Summer dresses"), else as "this pin", with the pin's id passed alongside so that the client
shows its thumbnail. Never by a raw id ("pin 30": meaningless to a person) and never by a label
the image model guessed ("pajamas" for a saved dress: wrong often enough to look broken).

Example
-------
>>> pin_phrase("Red wrap dress", "dresses"), pin_phrase("", "dresses"), pin_phrase("", "")
('"Red wrap dress"', 'a pin from dresses', 'this pin')
>>> saved_reason("", ""), related_reason("", "", visual=False, co_saved=True)
('because you saved this pin', 'often saved with this pin')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tastegraph.feed.data import SOURCES

if TYPE_CHECKING:
    from tastegraph.feed.catalog import PinCatalog
    from tastegraph.feed.pool import Pool
    from tastegraph.feed.state import Interests, UserState

__all__ = [
    "also_liked_reason",
    "board_phrase",
    "different_reason",
    "pin_phrase",
    "popular_reason",
    "reason_for",
    "related_reason",
    "saved_reason",
]

_MAX_NAME = 60


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_NAME else text[: _MAX_NAME - 1].rstrip() + "…"


def pin_phrase(title: str, board: str) -> str:
    """How a reason refers to a pin: its title, else its board, else "this pin"."""
    if title.strip():
        return f'"{_clip(title)}"'
    if board.strip():
        return f"a pin from {_clip(board)}"
    return "this pin"


def board_phrase(board: str) -> str:
    return _clip(board) if board.strip() else ""


def saved_reason(title: str, board: str) -> str:
    return f"because you saved {pin_phrase(title, board)}"


def also_liked_reason(title: str, board: str) -> str:
    name = pin_phrase(title, board)
    if name == "this pin":  # "people who liked this pin also liked this" reads as one pin
        return "people who liked what you liked also liked this"
    return f"people who liked {name} also liked this"


def popular_reason(board: str) -> str:
    name = board_phrase(board)
    return f"popular in {name}" if name else "popular right now"


def different_reason(board: str) -> str:
    name = board_phrase(board)
    return f"something different, from {name}" if name else "something different"


def related_reason(title: str, board: str, *, visual: bool, co_saved: bool) -> str:
    """Reason of a related pin, relative to the pin the list is for."""
    name = pin_phrase(title, board)
    if visual and co_saved:
        return f"looks like {name} and is saved with it"
    if visual:
        return f"looks like {name}"
    if name == "this pin":
        return "often saved with this pin"
    return f"people who saved {name} also saved this"


def reason_for(
    cat: PinCatalog,
    pool: Pool,
    j: int,
    source: int,
    interests: Interests | None,
    st: UserState | None,
) -> tuple[str, int | None]:
    """The reason of feed candidate ``j`` (primary ``source`` code) and the id of the pin it
    names (None when none)."""
    name = SOURCES[source]
    row = int(pool.rows[j])
    if name == "interest" and interests is not None:
        cluster = max(int(pool.cluster[j]), 0)
        saved = int(interests.saved_row[cluster])
        if saved >= 0:
            return saved_reason(*cat.words(saved)), int(cat.ids[saved])
        return "similar to pins you liked", None
    if name in ("walk", "cf", "behaviour"):
        seeds = {"walk": pool.walk_seed, "cf": pool.cf_seed, "behaviour": pool.behaviour_seed}
        seed = int(seeds[name][j])
        if seed >= 0 and st is not None:
            slot = st.hist_slot.get(seed)
            if slot is not None and st.hist_saved[slot]:
                return saved_reason(*cat.words(seed)), int(cat.ids[seed])
            return also_liked_reason(*cat.words(seed)), int(cat.ids[seed])
        return "similar to pins you liked", None
    if name == "popular":
        return popular_reason(cat.words(row)[1]), None
    if name == "fresh":
        return "new", None
    return different_reason(cat.words(row)[1]), None
