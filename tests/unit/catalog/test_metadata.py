"""Merging a manifest row's words into a pin, and counting a run's near-duplicate groups."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tastegraph.catalog.duplicates import groups_touching
from tastegraph.catalog.metadata import fold_rows, merge_item
from tastegraph.catalog.sources import SourceItem
from tastegraph.domain import Pin

_text = st.text(max_size=6)
_word = st.text(st.characters(categories=("L", "N")), min_size=1, max_size=5)
_attrs = st.dictionaries(_word, st.one_of(_word, st.integers(-5, 5), st.booleans()), max_size=3)


@st.composite
def pins(draw: st.DrawFn) -> Pin:
    labels = draw(st.lists(_word, max_size=3, unique=True))
    human = draw(st.lists(_word, max_size=3, unique=True))
    return Pin(
        id=1,
        content_hash="h",
        title=draw(_text),
        description=draw(_text),
        link=draw(_text),
        board=draw(_text),
        tags=list(dict.fromkeys([*human, *labels])),
        labels=[(lab, 0.5) for lab in labels],
        attributes=draw(_attrs),
    )


rows = st.builds(
    SourceItem,
    ref=st.just("x.jpg"),
    title=_text,
    description=_text,
    link=_text,
    board=_text,
    tags=st.lists(_word, max_size=3, unique=True),
    attributes=_attrs,
)


def _apply(pin: Pin, fields: dict[str, Any]) -> Pin:
    return replace(pin, **fields)


@given(pins(), rows)
def test_a_row_sets_what_it_gives_and_keeps_the_rest(pin: Pin, row: SourceItem) -> None:
    after = _apply(pin, merge_item(pin, row))
    for name in ("title", "description", "link", "board"):
        given_ = getattr(row, name).strip()
        assert getattr(after, name) == (given_ or getattr(pin, name))
    labels = [lab for lab, _ in pin.labels]
    if row.tags:
        # people's words first, the model's labels kept after them
        assert after.tags[: len(row.tags)] == row.tags
        assert set(after.tags) == set(row.tags) | set(labels)
    else:
        assert after.tags == pin.tags
    assert after.attributes == {**pin.attributes, **row.attributes}
    assert after.labels == pin.labels


@given(pins(), st.lists(rows, max_size=4))
def test_folding_rows_is_idempotent_and_counts_rows(pin: Pin, many: list[SourceItem]) -> None:
    fields, changed = fold_rows(pin, many)
    assert 0 <= changed <= len(many)
    assert (changed == 0) == (not fields)
    assert all(getattr(pin, k) != v for k, v in fields.items())  # only real changes
    after = _apply(pin, fields)
    # the same rows once more change nothing: re-ingesting a manifest is a no-op
    assert fold_rows(after, many) == ({}, 0)
    # the last row that gives a field wins it
    for name in ("title", "board"):
        given_ = [getattr(r, name).strip() for r in many if getattr(r, name).strip()]
        assert getattr(after, name) == (given_[-1] if given_ else getattr(pin, name))


@given(
    st.dictionaries(
        st.integers(1, 50), st.lists(st.integers(1, 50), min_size=2, max_size=5), max_size=6
    ),
    st.lists(st.integers(1, 60), max_size=10),
)
def test_groups_touching_counts_groups_with_a_new_member(
    groups: dict[int, list[int]], new: list[int]
) -> None:
    n = groups_touching(groups, new)
    assert n == len([g for g, members in groups.items() if set(members) & set(new)])
    assert groups_touching(groups, []) == 0
    assert groups_touching(groups, [p for m in groups.values() for p in m]) == len(groups)
