"""Composition root: ``build(settings) -> App`` wires the store, encoders, indexes and services.

Models and indexes load lazily so that commands which need neither (tokens, quarantine) start fast.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.models.base import Encoders
from tastegraph.settings import Settings
from tastegraph.store import SQLStore, open_store

__all__ = ["App", "build"]

PROJECTION_KEY = "image_projection"


@dataclass
class App:
    settings: Settings
    store: SQLStore
    _encoders: Encoders | None = None
    _indexes: Any = None
    _search: Any = None
    _engagement: Any = None
    _feeds: Any = None
    # Digest of the whitening projection record this process last read or wrote (see catch_up).
    _projection_seen: str | None = None
    # The store's event generation when the feed service was made (see catch_up_events).
    _events_seen: str | None = None
    _label_names: list[str] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # --------------------------------------------------------------- models
    @property
    def encoders(self) -> Encoders:
        with self._lock:
            if self._encoders is None:
                from tastegraph.models import make_encoders

                self._encoders = make_encoders(self.settings)
                self._label_names = list(self._encoders.image.label_names)
            return self._encoders

    @property
    def preprocess(self) -> Callable[[Any], NDArray[np.uint8]]:
        """The image model's input from a decoded RGB image (crop and resize).

        Picklable and free of the model code, so that ingest's decode workers run this very
        function without importing torch (about 2.5 s of CPU per worker); it is what the
        ``lite`` encoder's own ``preprocess`` does.
        """
        from tastegraph.catalog.images import model_input

        image = self.encoders.image
        return functools.partial(
            model_input,
            size=image.input_size,
            crop_fraction=getattr(image, "crop_fraction", 1.0),
            max_aspect=getattr(image, "max_aspect", 1.0),
        )

    def top_labels(self, probs: NDArray[np.float32], k: int = 3) -> list[list[tuple[str, float]]]:
        from tastegraph.models.image import top_labels

        names = self._label_names or list(self.encoders.image.label_names)
        # Only confident labels become tags: a 3% guess is noise in search and filters.
        return [top_labels(p, names, k=k, min_prob=0.15) for p in probs]

    # --------------------------------------------------------------- indexes
    @property
    def indexes(self) -> Any:
        with self._lock:
            if self._indexes is None:
                from tastegraph.index.spaces import SpaceIndexes

                enc = self.encoders
                self._indexes = SpaceIndexes(
                    self.settings.data_dir / "indexes" / self.settings.index.kind,
                    self.settings.index.kind,
                    self.store,
                    {
                        "image": (enc.image.model_id, enc.image.dim),
                        "text": (enc.text.model_id, enc.text.dim),
                        "conse": (enc.bridge.model_id, enc.bridge.dim),
                    },
                    self.settings.digest("index.kind"),
                )
                self._indexes.set_projection(self._load_projection())
            return self._indexes

    def _load_projection(self) -> Any:
        from tastegraph.models.whiten import PCAWhitener

        rec = self.store.get_kv(PROJECTION_KEY)
        self._projection_seen = rec.get("digest") if rec else None
        if not rec:
            return None
        try:
            return PCAWhitener.load(
                self.settings.data_dir / rec["path"],
                model_id=self.encoders.image.model_id,
                dim=self.settings.models.image_dim,
            )
        except Exception:
            # A stale projection (other model or dim) is derived data: drop it, refit later.
            return None

    def fit_projection(self, force: bool = False) -> bool:
        """Fit the PCA-whitening of image vectors on the catalog once it is large enough."""
        from tastegraph.models.whiten import PCAWhitener

        idx = self.indexes
        if idx.projection is not None and not force:
            return False
        n = self.store.count_pins()
        dim = self.settings.models.image_dim
        if n < max(self.settings.models.whiten_min_pins, dim + 1):
            return False
        _, mat, _ = self.store.get_vectors("image")
        model_id = self.encoders.image.model_id
        w = PCAWhitener(dim=dim, model_id=model_id).fit(mat)
        rel = Path("models") / f"whitener-{w.digest_}.npz"
        w.save(self.settings.data_dir / rel)
        self.store.set_kv(PROJECTION_KEY, {"path": str(rel), "digest": w.digest_, "n": n})
        self._projection_seen = w.digest_
        idx.set_projection(w)
        return True

    # --------------------------------------------------------------- services
    @property
    def search(self) -> Any:
        with self._lock:
            if self._search is None:
                from tastegraph.search.service import SearchService

                self._search = SearchService(self)
            return self._search

    @property
    def engagement(self) -> Any:
        with self._lock:
            if self._engagement is None:
                from tastegraph.recs.service import EngagementService

                self._engagement = EngagementService(self)
            return self._engagement

    @property
    def feeds(self) -> Any:
        with self._lock:
            if self._feeds is None:
                from tastegraph.recs.feed_service import FeedService

                self._events_seen = self.store.events_generation()
                self._feeds = FeedService(self)
            return self._feeds

    def catch_up_events(self) -> bool:
        """Drop the feed engine if logged events were deleted since it was made (by this process
        or another): it follows the log by id and cannot un-learn them, so it is rebuilt from
        the log as it now is on its next use. True when it was dropped."""
        with self._lock:
            if self._feeds is None or self.store.events_generation() == self._events_seen:
                return False
            self._feeds = None
            return True

    def after_ingest(self, new_ids: list[int]) -> None:
        """Keep derived state in step after pins were added: duplicates, whitening, indexes."""
        from tastegraph.catalog.duplicates import group_near_duplicates

        ids, hashes = self.store.phashes()
        existing = {p: g for g, members in self.store.dup_groups().items() for p in members}
        groups = group_near_duplicates(
            ids,
            hashes,
            np.array(new_ids, np.int64),
            max_distance=self.settings.ingest.dup_max_distance,
            existing=existing,
        )
        changed = {p: g for p, g in groups.items() if existing.get(p) != g}
        if changed:
            self.store.set_dup_groups(changed)
        refit = self.fit_projection()
        self.indexes.sync(save=True)
        if self._feeds is not None:
            if refit:  # vectors changed space: rebuild the feed engine on next use
                self._feeds = None
            else:
                self._feeds.add_pins(new_ids)

    def catch_up(self) -> dict[str, int]:
        """Take in catalog changes made by other processes (``tastegraph ingest``, ``reindex``
        or another server on the same data) while this one runs; cheap when there are none.

        Pins added or deleted elsewhere reach the in-memory indexes (so search finds them) and
        the feed engine. If another process fitted a new whitening projection, the vectors
        changed space: the indexes are reopened from disk, where that process saved them, and
        the feed engine is rebuilt on its next use. Returns the changes applied per index
        (``{"reopened": 1}`` after a projection change).
        """
        with self._lock:
            dropped = self.catch_up_events()
            idx = self._indexes
            if idx is None:
                return {"events_deleted": 1} if dropped else {}
            rec = self.store.get_kv(PROJECTION_KEY)
            want = rec.get("digest") if rec else None
            if want is not None and want != self._projection_seen:
                self._indexes = None
                self._feeds = None
                return {"reopened": 1}
        applied: dict[str, int] = idx.sync(save=False)
        if dropped:
            applied["events_deleted"] = 1
        feeds = self._feeds
        if feeds is not None:
            applied["feeds"] = feeds.catch_up_catalog()
        return applied

    def close(self) -> None:
        if self._indexes is not None:
            self._indexes.save()
        self.store.close()


def build(settings: Settings) -> App:
    """Open the data dir described by ``settings`` (creating it on first use)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return App(settings=settings, store=open_store(settings.resolved_store_url))
