"""Editing the words of pins already in the catalog: one path for ``PATCH /pins/{id}`` and ingest.

People's words (a manifest's cells, an edit) win over generated ones (model labels kept in
``tags``), and an empty cell never erases words already there. Whatever changes the title or
description re-encodes the text vector in the same store transaction, and the indexes catch up
from the store's change log, so search sees the new words at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tastegraph.domain import Pin

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from tastegraph.catalog.ports import CatalogContext
    from tastegraph.catalog.sources import SourceItem

__all__ = [
    "PinEdit",
    "apply_edits",
    "fold_rows",
    "merge_item",
    "pin_text",
    "update_known",
    "update_pin",
]

# (pin id, the fields to set): fields as ``SQLStore.update_pin`` takes them.
PinEdit = tuple[int, dict[str, Any]]

_TEXT_FIELDS = ("title", "description", "link", "board")


def pin_text(title: str, description: str) -> str:
    """The text the text vector encodes: title and description, as ingest writes it."""
    return ". ".join(s.strip() for s in (title, description) if s and s.strip())


def merge_item(pin: Pin, item: SourceItem) -> dict[str, Any]:
    """The fields a manifest row changes on a pin it names (empty: nothing to change).

    A non-empty cell replaces the pin's value; an empty one leaves it. Tags given by the row
    replace the words people gave before, and the model's label tags stay after them (the row's
    words come first, so they win in display and BM25); attributes are merged key by key.
    """
    fields: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        value = getattr(item, name).strip()
        if value and value != getattr(pin, name):
            fields[name] = value
    if item.tags:
        labels = [lab for lab, _ in pin.labels]
        tags = list(dict.fromkeys([*item.tags, *(t for t in pin.tags if t in labels)]))
        if tags != pin.tags:
            fields["tags"] = tags
    if item.attributes:
        attrs = {**pin.attributes, **item.attributes}
        if attrs != pin.attributes:
            fields["attributes"] = attrs
    return fields


def fold_rows(pin: Pin, rows: Sequence[SourceItem]) -> tuple[dict[str, Any], int]:
    """The fields several rows naming one pin change (later rows win), and how many rows
    changed something at their turn; 0 when, together, they leave the pin as it was."""
    cur, fields, changed = pin, {}, 0
    for row in rows:
        step = merge_item(cur, row)
        if step:
            changed += 1
            fields.update(step)
            cur = replace(cur, **step)
    net = {k: v for k, v in fields.items() if getattr(pin, k) != v}
    return net, changed if net else 0


def apply_edits(
    app: CatalogContext, edits: Sequence[PinEdit], *, skip_missing: bool = False
) -> list[Pin]:
    """Store the edits in one transaction, with new text vectors, and bring the indexes along.

    A pin that does not exist raises :class:`~tastegraph.errors.NotFound` (nothing stored), or
    with ``skip_missing`` is left out.
    """
    edits = [(pin_id, fields) for pin_id, fields in edits if fields]
    if not edits:
        return []
    current = app.store.get_pins(
        [pin_id for pin_id, f in edits if "title" in f or "description" in f]
    )
    texts: dict[int, str] = {}
    for pin_id, fields in edits:
        cur = current.get(pin_id)
        if cur is None:
            continue  # no words change, or the pin is gone (the store says which)
        text = pin_text(fields.get("title", cur.title), fields.get("description", cur.description))
        if text:
            texts[pin_id] = text
    vectors: dict[int, dict[str, tuple[str, NDArray[np.float32]]]] = {}
    if texts:
        enc = app.encoders.text
        ids = list(texts)
        for pin_id, vec in zip(ids, enc.encode([texts[i] for i in ids]), strict=True):
            vectors[pin_id] = {"text": (enc.model_id, vec)}
    pins = app.store.update_pins(
        [(p, f, vectors.get(p)) for p, f in edits], skip_missing=skip_missing
    )
    app.indexes.sync(save=True)
    return pins


def update_pin(app: CatalogContext, pin_id: int, fields: dict[str, Any]) -> Pin:
    """Set a pin's fields as given (``PATCH /pins/{id}``: an empty string does clear a field)."""
    pins = apply_edits(app, [(pin_id, fields)])
    return pins[0] if pins else app.store.get_pin(pin_id)


def update_known(
    app: CatalogContext, known: Mapping[int, Sequence[SourceItem]], say: Callable[[str], None]
) -> tuple[int, int]:
    """Give pins already in the catalog the words their rows carry, in one transaction.

    ``known`` maps each pin to the rows naming it, in manifest order. Returns how many rows
    updated their pin and how many changed nothing.
    """
    if not known:
        return 0, 0
    pins = app.store.get_pins(list(known))
    edits: list[PinEdit] = []
    updated = unchanged = 0
    for pin_id, rows in known.items():
        pin = pins.get(pin_id)
        if pin is None:  # deleted since: its rows have nothing left to change
            unchanged += len(rows)
            continue
        fields, changed = fold_rows(pin, rows)
        updated += changed
        unchanged += len(rows) - changed
        if fields:
            edits.append((pin_id, fields))
    if edits:
        n = len(edits)
        say(f"updating the words of {n} pin{'s' * (n != 1)} already in the catalog...")
        apply_edits(app, edits, skip_missing=True)  # a pin deleted meanwhile has no words left
    return updated, unchanged
