"""``tastegraph eval retrieval`` and ``eval captions``: quality measured through ingest + search.

Both build a fresh catalog from the images with the product's own pipeline (same models,
whitening learned on the catalog itself, same index) and query it the way users do, so the
figures describe what users get, not a side script.
"""

from __future__ import annotations

import csv
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tastegraph.app import App, build
from tastegraph.catalog.sources import SourceItem
from tastegraph.errors import Conflict, InvalidInput
from tastegraph.evaluation.metrics import average_precision_at_k, precision_at_k, recall_at_k
from tastegraph.progress import progress_bar
from tastegraph.settings import Settings
from tastegraph.store.db import safe_url

__all__ = [
    "UNLABELLED_MARKERS",
    "evaluate_captions",
    "evaluate_retrieval",
    "labelled_rows",
    "parse_where",
    "resolve_images",
]

# Labels that say "no class was given" rather than naming one. Two photos that an annotator could
# not place ("Not sure"), skipped ("Skip") or put in a catch-all bucket ("Other") are not alike,
# so counting them as relevant to each other measures the annotation, not the search.
UNLABELLED_MARKERS: tuple[str, ...] = ("", "not sure", "other", "skip", "unknown", "none", "n/a")

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def resolve_images(images: Path) -> dict[str, Path]:
    """Map every image in ``images`` by file name and by stem, lower-cased."""
    if not images.is_dir():
        raise InvalidInput(f"{images} is not a folder of images")
    out: dict[str, Path] = {}
    for p in sorted(images.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
            out.setdefault(p.name.lower(), p)
            out.setdefault(p.stem.lower(), p)
    return out


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = [c.strip().lower() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in cols]
        if missing:
            raise InvalidInput(f"{path} lacks column(s) {missing}", hint=f"need {list(required)}")
        return [
            {k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader
        ]


def parse_where(clauses: list[str] | None) -> dict[str, str]:
    """``["kids=False", "split = test"]`` -> ``{"kids": "false", "split": "test"}``.

    Column names and values are compared case-insensitively, after trimming spaces.

    >>> parse_where(["kids=False"])
    {'kids': 'false'}
    """
    out: dict[str, str] = {}
    for clause in clauses or []:
        col, sep, val = clause.partition("=")
        if not sep or not col.strip():
            raise InvalidInput(
                f"bad filter {clause!r}", hint="write COLUMN=VALUE, for example kids=False"
            )
        out[col.strip().lower()] = val.strip().lower()
    return out


def labelled_rows(
    rows: list[dict[str, str]],
    *,
    unlabelled: tuple[str, ...] = UNLABELLED_MARKERS,
    where: dict[str, str] | None = None,
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """The rows that take part in a retrieval evaluation, and how many were left out and why.

    A row takes part when its label names a class (not one of ``unlabelled``, compared
    case-insensitively) and every ``where`` column equals its value. Rows left out are neither
    queries nor catalog items.

    >>> rows = [{"image": "a", "label": "Hat"}, {"image": "b", "label": "Not sure"}]
    >>> labelled_rows(rows)
    ([{'image': 'a', 'label': 'Hat'}], {'unlabelled': 1, 'filtered': 0})
    """
    markers = {m.strip().lower() for m in unlabelled}
    where = where or {}
    if rows:
        missing = [c for c in where if c not in rows[0]]
        if missing:
            raise InvalidInput(
                f"filter column(s) {missing} are not in the labels file",
                hint=f"columns are {sorted(rows[0])}",
            )
    kept: list[dict[str, str]] = []
    skipped = {"unlabelled": 0, "filtered": 0}
    for r in rows:
        if r["label"].strip().lower() in markers:
            skipped["unlabelled"] += 1
        elif any(r.get(c, "").strip().lower() != v for c, v in where.items()):
            skipped["filtered"] += 1
        else:
            kept.append(r)
    return kept, skipped


@contextmanager
def _catalog(
    settings: Settings | None, data_dir: Path | None, store_url: str | None = None
) -> Iterator[App]:
    """The evaluation's own catalog: a temporary SQLite store, or the empty store at
    ``store_url`` (to measure on PostgreSQL); never the configured one, which holds a real
    catalog the evaluation images must not be mixed into."""
    with tempfile.TemporaryDirectory(prefix="tastegraph-eval-") as tmp:
        base = settings or Settings()
        models = base.data_dir / "models"
        s = base.updated(data_dir=data_dir or Path(tmp), store={"url": store_url or ""})
        app = build(s)
        try:
            if store_url and app.store.count_pins():
                raise Conflict(
                    f"the evaluation store {safe_url(store_url)} already holds "
                    f"{app.store.count_pins()} pins",
                    hint="pass --store the URL of an empty database (the evaluation ingests "
                    "its images there), or leave --store out for a temporary SQLite file",
                )
            # Share exported model files with the main data dir so evaluation does not re-export.
            if models.is_dir() and not (s.data_dir / "models").exists():
                (s.data_dir / "models").symlink_to(models.resolve(), target_is_directory=True)
            yield app
        finally:
            app.close()


def _ingest_files(app: App, files: list[Path], progress: bool) -> dict[str, int]:
    items = [SourceItem(ref=str(p)) for p in files]
    report = app.catalog.ingest_items(items, source_label="eval", progress=progress)
    if report.quarantine:
        bad = ", ".join(f"{q.source}: {q.reason}" for q in report.quarantine[:5])
        raise InvalidInput(f"{len(report.quarantine)} evaluation images were rejected ({bad})")
    pins = app.store.source_pins()
    return {ref: int(pin_id) for ref, pin_id in pins.items() if pin_id is not None}


def evaluate_retrieval(
    images: Path,
    labels: Path,
    *,
    settings: Settings | None = None,
    data_dir: Path | None = None,
    progress: bool = True,
    unlabelled: tuple[str, ...] = UNLABELLED_MARKERS,
    where: dict[str, str] | None = None,
    store_url: str | None = None,
) -> dict[str, Any]:
    """Each labelled image queries the rest; relevant = same label. P@1, P@10, mAP@10.

    Rows whose label is one of ``unlabelled`` ("Not sure", "Skip", ...) and rows that fail a
    ``where`` filter take no part: they are neither queries nor in the catalog.
    """
    index = resolve_images(images)
    rows, skipped = labelled_rows(
        _read_csv(labels, ("image", "label")), unlabelled=unlabelled, where=where
    )
    files: list[Path] = []
    label_of: dict[Path, str] = {}
    unmatched = 0
    for r in rows:
        key = r["image"].lower()
        p = index.get(key) or index.get(Path(key).stem)
        if p is None:
            unmatched += 1
            continue
        if p not in label_of:
            files.append(p)
            label_of[p] = r["label"]
    if len(files) < 2:
        raise InvalidInput("fewer than two labelled images were found in the folder")
    with _catalog(settings, data_dir, store_url) as app:
        ref_to_pin = _ingest_files(app, files, progress)
        pin_label: dict[int, str] = {}
        for p in files:
            pin_label.setdefault(ref_to_pin[str(p)], label_of[p])
        counts: dict[str, int] = defaultdict(int)
        for lab in pin_label.values():
            counts[lab] += 1
        p1, p10, ap = [], [], []
        with progress_bar("queries", len(pin_label), unit="q", enabled=progress) as bar:
            for pin_id, lab in pin_label.items():
                page = app.search.similar(pin_id, limit=10)
                rel = [pin_label.get(h.pin_id) == lab for h in page.hits]
                p1.append(precision_at_k(rel, 1))
                p10.append(precision_at_k(rel, 10))
                ap.append(average_precision_at_k(rel, counts[lab] - 1, 10))
                bar.advance()
        stats = app.indexes.stats()["image"]
    return {
        "n_images": len(pin_label),
        "n_labels": len(counts),
        "unmatched_rows": unmatched,
        "protocol": {
            "unlabelled_markers": list(unlabelled),
            "where": where or {},
            "rows_unlabelled": skipped["unlabelled"],
            "rows_filtered": skipped["filtered"],
        },
        "p_at_1": round(float(np.mean(p1)), 4),
        "p_at_10": round(float(np.mean(p10)), 4),
        "map_at_10": round(float(np.mean(ap)), 4),
        "index": stats,
    }


def evaluate_captions(
    images: Path,
    captions: Path,
    *,
    settings: Settings | None = None,
    data_dir: Path | None = None,
    progress: bool = True,
    store_url: str | None = None,
) -> dict[str, Any]:
    """Each caption queries the images through text search; one relevant image per caption."""
    index = resolve_images(images)
    rows = _read_csv(captions, ("image", "caption"))
    pairs: list[tuple[Path, str]] = []
    for r in rows:
        key = r["image"].lower()
        p = index.get(key) or index.get(Path(key).stem)
        if p is not None and r["caption"]:
            pairs.append((p, r["caption"]))
    files = sorted({p for p, _ in pairs})
    if not pairs:
        raise InvalidInput("no caption matched an image in the folder")
    with _catalog(settings, data_dir, store_url) as app:
        ref_to_pin = _ingest_files(app, files, progress)
        r1, r5, r10 = [], [], []
        with progress_bar("captions", len(pairs), unit="q", enabled=progress) as bar:
            for p, caption in pairs:
                target = ref_to_pin[str(p)]
                page = app.search.text(caption, limit=10)
                ranked = [h.pin_id for h in page.hits]
                rank = ranked.index(target) if target in ranked else None
                r1.append(recall_at_k(rank, 1))
                r5.append(recall_at_k(rank, 5))
                r10.append(recall_at_k(rank, 10))
                bar.advance()
    return {
        "n_images": len(files),
        "n_captions": len(pairs),
        "r_at_1": round(float(np.mean(r1)), 4),
        "r_at_5": round(float(np.mean(r5)), 4),
        "r_at_10": round(float(np.mean(r10)), 4),
    }
