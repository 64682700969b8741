"""Row selection of `eval retrieval`: which labelled rows take part, and bad filters."""

from __future__ import annotations

import pytest

from tastegraph.errors import InvalidInput
from tastegraph.evaluation.search_eval import labelled_rows, parse_where

ROWS = [
    {"image": "a", "label": "Hat", "kids": "False"},
    {"image": "b", "label": "not sure", "kids": "False"},
    {"image": "c", "label": "Skip", "kids": "True"},
    {"image": "d", "label": "Hat", "kids": "True"},
    {"image": "e", "label": "", "kids": "False"},
    {"image": "f", "label": "Shoes", "kids": "false"},
]


def test_unlabelled_markers_are_left_out_case_insensitively() -> None:
    kept, skipped = labelled_rows(ROWS)
    assert [r["image"] for r in kept] == ["a", "d", "f"]
    assert skipped == {"unlabelled": 3, "filtered": 0}


def test_every_label_counts_when_no_markers_are_given() -> None:
    kept, skipped = labelled_rows(ROWS, unlabelled=())
    assert len(kept) == len(ROWS) and skipped["unlabelled"] == 0


def test_where_filters_compare_case_insensitively() -> None:
    kept, skipped = labelled_rows(ROWS, where=parse_where(["Kids = FALSE"]))
    assert [r["image"] for r in kept] == ["a", "f"]
    assert skipped == {"unlabelled": 3, "filtered": 1}


@pytest.mark.parametrize("clause", ["kids", "=False", ""])
def test_malformed_filters_are_rejected_with_a_hint(clause: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_where([clause])
    assert "COLUMN=VALUE" in (e.value.hint or "")


def test_unknown_filter_column_names_the_columns() -> None:
    with pytest.raises(InvalidInput) as e:
        labelled_rows(ROWS, where={"colour": "red"})
    assert "colour" in str(e.value) and "kids" in (e.value.hint or "")
