"""Quality parity (issue 17, item 7): the evaluations give the same figures on SQLite and on
PostgreSQL, on a small subset of the shared data with the real models (retrieval identical,
captions within 0.01). The full runs are in docs/operations.md."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tastegraph.evaluation import evaluate_captions, evaluate_retrieval
from tastegraph.settings import Settings
from tests.conftest import MODEL_CACHE, eval_data

pytestmark = [pytest.mark.slow, pytest.mark.data]


@pytest.fixture
def base(tmp_path: Path) -> Settings:
    """Settings whose data dir shares the exported models (the evaluation links them)."""
    data = tmp_path / "base"
    data.mkdir()
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    (data / "models").symlink_to(MODEL_CACHE, target_is_directory=True)
    return Settings(data_dir=data)


def _subset(src: Path, out: Path, key: str, per: dict[str, int] | None, images: int) -> Path:
    """The first rows of ``src``: ``per`` label, or of the first ``images`` images."""
    wanted = dict(per or {})
    seen: list[str] = []
    rows = []
    with src.open() as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        for r in reader:
            if per is not None:
                if wanted.get(r[key], 0) > 0:
                    wanted[r[key]] -= 1
                    rows.append(r)
            elif r["image"] in seen or len(seen) < images:
                if r["image"] not in seen:
                    seen.append(r["image"])
                rows.append(r)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)
    return out


def test_retrieval_is_identical_and_captions_within_a_hundredth_on_both_stores(
    base: Settings, tmp_path: Path, postgres_url: str, postgres: object
) -> None:
    clothing, flickr = eval_data("clothing"), eval_data("flickr8k-1k")
    per = {"Shoes": 10, "Hat": 10, "Dress": 10, "Pants": 10, "T-Shirt": 10}
    labels = _subset(clothing / "labels.csv", tmp_path / "labels.csv", "label", per, 0)
    captions = _subset(flickr / "captions.csv", tmp_path / "captions.csv", "image", None, 40)
    retrieval = {
        store: evaluate_retrieval(
            clothing / "images", labels, settings=base, progress=False, store_url=url
        )
        for store, url in (("sqlite", None), ("postgresql", postgres_url))
    }
    assert retrieval["sqlite"]["n_images"] == 50
    assert retrieval["postgresql"] == retrieval["sqlite"]
    second = postgres.fresh_database()  # type: ignore[attr-defined]
    try:
        words = {
            store: evaluate_captions(
                flickr / "images", captions, settings=base, progress=False, store_url=url
            )
            for store, url in (("sqlite", None), ("postgresql", second))
        }
    finally:
        postgres.drop(second)  # type: ignore[attr-defined]
    assert words["sqlite"]["n_captions"] == words["postgresql"]["n_captions"] >= 190
    for k in ("r_at_1", "r_at_5", "r_at_10"):
        assert abs(words["postgresql"][k] - words["sqlite"][k]) <= 0.01, (k, words)
