"""The default ``auto`` kind: HNSW below ``ivf_from`` vectors, rebuilt as IVF there."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

from tastegraph.errors import InvalidInput
from tastegraph.index import IndexMeta, auto, open_index
from tastegraph.index.auto import AutoIndex
from tastegraph.index.hnsw import HNSWIndex
from tastegraph.index.ivf import IVFIndex
from tastegraph.index.topk import brute_force
from tests.unit.index.test_index import clustered, recall

DIM = 32


def meta() -> IndexMeta:
    return IndexMeta("image", "m@1", DIM, digest="d", dtype="f16")


def test_the_add_reaching_ivf_from_rebuilds_as_ivf_keeping_everything(tmp_path: Path) -> None:
    x = clustered(3100, DIM)
    pins, q = x[:3000], x[3000:]
    ids = np.arange(7, 3007, dtype=np.int64)
    idx = open_index("auto", tmp_path / "i", meta(), ivf_from=2500, train_min=1000, nprobe=8)
    assert isinstance(idx, AutoIndex)
    idx.add(ids[:2000], pins[:2000])
    idx.watermark = 41
    assert idx.kind == "hnsw" and isinstance(idx.inner, HNSWIndex)
    idx.add(ids[2000:], pins[2000:])
    assert idx.kind == "ivf" and isinstance(idx.inner, IVFIndex) and idx.inner.trained
    # Trained once on all 3000, not on the first chunk.
    assert idx.inner.params["trained_on"] == 3000
    assert len(idx) == 3000 and idx.watermark == 41 and 7 in idx
    truth = brute_force(q, 10, [(pins, ids)])[1]
    assert recall(idx.search(q, 10)[1], truth) >= 0.95
    idx.save()
    again = open_index("auto", tmp_path / "i", meta())
    assert again.kind == "ivf" and len(again) == 3000 and again.watermark == 41
    # The same folder opens with the explicit kind too: the files are the backend's own.
    assert open_index("ivf", tmp_path / "i", meta()).kind == "ivf"


def test_an_existing_hnsw_folder_opens_as_it_is(tmp_path: Path) -> None:
    old = open_index("hnsw", tmp_path / "h", meta())
    old.add(np.arange(50), clustered(50, DIM))
    old.save()
    idx = open_index("auto", tmp_path / "h", meta())
    assert idx.kind == "hnsw" and len(idx) == 50


def test_bad_parameters_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="ivf_from"):
        open_index("auto", tmp_path, meta(), ivf_from=0)
    with pytest.raises(InvalidInput, match="bogus"):
        open_index("auto", tmp_path, meta(), bogus=1)


def test_kind_is_not_settable(tmp_path: Path) -> None:
    idx = open_index("auto", tmp_path, meta())
    with pytest.raises(AttributeError):
        idx.kind = "exact"


def test_docstring_examples() -> None:
    result = doctest.testmod(auto, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
