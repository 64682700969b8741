"""The catalog service: ingest, create, update (with re-encoding), delete and reindex pins.

Routes and CLI commands call it and nothing else for catalog writes. It keeps what is derived
from the pins in step with the store (near-duplicate groups, the image whitening projection,
the vector indexes) and tells the rest of the system what changed through
:class:`CatalogHooks` (the feed engine listens today).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import InvalidInput, NotFound
from tastegraph.index.spaces import PROJECTION_KEY

if TYPE_CHECKING:
    from tastegraph.catalog.pipeline.report import IngestReport
    from tastegraph.catalog.pipeline.run import Runner
    from tastegraph.catalog.ports import Preprocess
    from tastegraph.catalog.reencode import Reencoder, ReencodeReport
    from tastegraph.catalog.sources import SourceError, SourceItem
    from tastegraph.domain import Pin
    from tastegraph.index.spaces import SpaceIndexes
    from tastegraph.models.base import Encoders
    from tastegraph.settings import Settings
    from tastegraph.store import SQLStore

__all__ = [
    "CatalogHooks",
    "CatalogService",
    "Created",
    "ReindexReport",
    "upload_ref",
]


Labeller = Callable[[NDArray[np.float32], int], list[list[tuple[str, float]]]]


def _ignore(*_: Any) -> None:
    return None


@dataclass(frozen=True)
class CatalogHooks:
    """What the catalog tells whoever keeps state derived from it (the feed engine, the App's
    indexes). Each is called after the store has the change.

    ``pins_added(ids)``: pins were added (and are in the indexes). ``pins_deleted(ids)``: pins
    were deleted. ``projection_fitted(digest)``: a new whitening projection moved every image
    vector (derived state must be rebuilt, not extended; this process wrote the record named
    ``digest``). ``indexes_reset()``: the index files were deleted: indexes held in memory must
    be opened again, from the store.
    """

    pins_added: Callable[[list[int]], None] = _ignore
    pins_deleted: Callable[[list[int]], None] = _ignore
    projection_fitted: Callable[[str], None] = _ignore
    indexes_reset: Callable[[], None] = _ignore


@dataclass(frozen=True)
class Created:
    """The pin an image became: ``created`` is false when the image was already a pin."""

    created: bool
    pin: Pin


@dataclass
class ReindexReport:
    """What ``reindex`` did: the index stats, changes applied per index, the re-encoding."""

    rebuilt: bool = False
    stats: dict[str, Any] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)
    reencode: ReencodeReport | None = None

    def to_dict(self) -> dict[str, Any]:
        extra = {"reencode": self.reencode.to_dict()} if self.reencode is not None else {}
        if not self.rebuilt:
            return extra
        return {"indexes": self.stats, "applied": self.applied, **extra}


def upload_ref(data: bytes, filename: str | None) -> str:
    """The source reference of an uploaded file: its content, then the name it came with."""
    from tastegraph.imaging.hashes import content_hash

    return f"upload:{content_hash(data)[:16]}:{filename or 'image'}"


class CatalogService:
    """Ingest, create, update (re-encoding what changed), delete and reindex pins.

    Models and indexes come from providers, called on first use, so that building the service
    loads nothing. The service is itself the :class:`~tastegraph.catalog.ports.CatalogContext`
    the pipelines (``catalog.pipeline``, ``catalog.metadata``, ``catalog.reencode``) run on.
    """

    def __init__(
        self,
        store: SQLStore,
        settings: Settings,
        *,
        encoders: Callable[[], Encoders],
        indexes: Callable[[], SpaceIndexes],
        preprocess: Callable[[], Preprocess],
        top_labels: Labeller,
        hooks: CatalogHooks | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._encoders = encoders
        self._indexes = indexes
        self._preprocess = preprocess
        self._top_labels = top_labels
        self._hooks = hooks or CatalogHooks()

    # ---------------------------------------------------------------- context
    @property
    def store(self) -> SQLStore:
        return self._store

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def encoders(self) -> Encoders:
        return self._encoders()

    @property
    def indexes(self) -> SpaceIndexes:
        return self._indexes()

    @property
    def preprocess(self) -> Preprocess:
        return self._preprocess()

    def top_labels(self, probs: NDArray[np.float32], k: int = 3) -> list[list[tuple[str, float]]]:
        return self._top_labels(probs, k)

    # ----------------------------------------------------------------- ingest
    def ingest(
        self, source: str, *, progress: bool = True, runner: Runner | None = None
    ) -> IngestReport:
        """Ingest every image a folder or a CSV/JSONL manifest names (resumable, idempotent).

        ``runner``: where the steps run (default: this machine; ``ray_runner.RayRunner``: Ray).
        """
        from tastegraph.catalog.pipeline.local import run_local
        from tastegraph.catalog.pipeline.run import ingest

        return ingest(self, source, progress=progress, runner=runner or run_local)

    def ingest_items(
        self,
        items: Iterable[SourceItem | SourceError],
        *,
        source_label: str,
        progress: bool = True,
        data: dict[str, bytes] | None = None,
        runner: Runner | None = None,
    ) -> IngestReport:
        """Ingest items already enumerated; ``data`` maps refs to bytes already in memory."""
        from tastegraph.catalog.pipeline.local import run_local
        from tastegraph.catalog.pipeline.run import ingest_items

        return ingest_items(
            self,
            items,
            source_label=source_label,
            progress=progress,
            data=data,
            runner=runner or run_local,
        )

    def create(self, item: SourceItem, data: bytes | None = None) -> Created:
        """One image as a pin: ``data`` when given (an upload), else fetched from ``item.ref``
        (an http(s) URL, as this server's settings allow; never a local file).

        :class:`~tastegraph.errors.InvalidInput` when it is not an image we can read.
        """
        from tastegraph.imaging.hashes import content_hash
        from tastegraph.imaging.limits import ImageLimits
        from tastegraph.imaging.read import read_source_bytes

        if data is None:
            s = self._settings
            data = read_source_bytes(
                item.ref,
                ImageLimits.from_settings(s),
                timeout=s.ingest.fetch_timeout_s,
                allow_url=s.api.allow_url_fetch,
                allow_private_hosts=s.api.allow_private_url_hosts,
                allow_local_files=False,
            )
        report = self.ingest_items(
            [item], source_label=item.ref, progress=False, data={item.ref: data}
        )
        if report.quarantine:
            q = report.quarantine[0]
            raise InvalidInput(q.message, reason=q.reason)
        pin_id = self._store.find_by_hash(content_hash(data))
        if pin_id is None:  # pragma: no cover - ingest either adds, finds or rejects
            raise NotFound("the pin was not stored")
        return Created(bool(report.added), self._store.get_pin(pin_id))

    # ------------------------------------------------------------ edit, delete
    def update(self, pin_id: int, fields: dict[str, Any]) -> Pin:
        """Set a pin's fields as given (an empty string clears one); the text vector follows
        its title and description, in the same transaction, and the indexes catch up."""
        from tastegraph.catalog.metadata import update_pin

        return update_pin(self, pin_id, fields)

    def delete(self, pin_id: int) -> None:
        """Delete a pin and its vectors (its id is never given to another pin)."""
        self._store.delete_pin(pin_id)
        self.indexes.sync(save=True)
        self._hooks.pins_deleted([pin_id])

    # ------------------------------------------------------------- reindexing
    def reencode(
        self,
        *,
        on_batch: Callable[[int, int], None] | None = None,
        reencoder: Reencoder | None = None,
    ) -> ReencodeReport:
        """Remake every vector another model made, from the pins' original files.

        ``reencoder``: where it runs (default: this process; ``ray_reencode.RayReencoder``).
        """
        if reencoder is not None:
            return reencoder(self, on_batch=on_batch)
        from tastegraph.catalog.reencode import reencode

        return reencode(self, on_batch=on_batch)

    def reindex(
        self,
        *,
        refit: bool = False,
        reencode: bool = False,
        on_batch: Callable[[int, int], None] | None = None,
        reencoder: Reencoder | None = None,
    ) -> ReindexReport:
        """Rebuild the vector indexes from the vectors kept in the store.

        ``reencode`` first remakes vectors of other models (``on_batch(done, total)`` follows
        it); when some pins could not be re-encoded the indexes are left as they were
        (``rebuilt`` false). ``refit`` fits the image whitening again first. The index folder
        is deleted and the indexes are built again from the store.
        """
        report = ReindexReport()
        if reencode:
            report.reencode = self.reencode(on_batch=on_batch, reencoder=reencoder)
            if report.reencode.failed:
                return report
        s = self._settings
        shutil.rmtree(s.data_dir / "indexes" / s.index.kind, ignore_errors=True)
        self._hooks.indexes_reset()
        if refit:
            self.fit_projection(force=True)
        report.applied = self.indexes.sync(save=True)
        if self.fit_projection():  # the image index was dropped for the new projection
            report.applied["image"] = self.indexes.sync(save=True)["image"]
        report.stats = self.indexes.stats()
        report.rebuilt = True
        return report

    # ---------------------------------------------------------- derived state
    def after_ingest(self, new_ids: list[int]) -> None:
        """Keep derived state in step after pins were added: duplicates, whitening, indexes."""
        from tastegraph.catalog.duplicates import group_near_duplicates

        store = self._store
        ids, hashes = store.phashes()
        existing = {p: g for g, members in store.dup_groups().items() for p in members}
        groups = group_near_duplicates(
            ids,
            hashes,
            np.array(new_ids, np.int64),
            max_distance=self._settings.ingest.dup_max_distance,
            existing=existing,
        )
        changed = {p: g for p, g in groups.items() if existing.get(p) != g}
        if changed:
            store.set_dup_groups(changed)
        refit = self.fit_projection()  # says projection_fitted itself
        self.indexes.sync(save=True)
        if not refit:
            self._hooks.pins_added(new_ids)

    def fit_projection(self, force: bool = False) -> bool:
        """Fit the PCA-whitening of image vectors on the catalog once it is large enough."""
        from tastegraph.models.whiten import PCAWhitener

        idx = self.indexes
        if idx.projection is not None and not force:
            return False
        s = self._settings
        n = self._store.count_pins()
        dim = s.models.image_dim
        if n < max(s.models.whiten_min_pins, dim + 1):
            return False
        _, mat, _ = self._store.get_vectors("image")
        model_id = self.encoders.image.model_id
        w = PCAWhitener(dim=dim, model_id=model_id).fit(mat)
        rel = Path("models") / f"whitener-{w.digest_}.npz"
        w.save(s.data_dir / rel)
        # Published in the store too, so a process with another data dir fetches it.
        published = self._store.put_artefact(
            PROJECTION_KEY,
            (s.data_dir / rel).read_bytes(),
            {"model_id": model_id, "dim": dim, "pins": n, "projection": w.digest_},
        )
        self._store.set_kv(
            PROJECTION_KEY,
            {"path": str(rel), "digest": w.digest_, "n": n, "artefact": published.digest},
        )
        self._hooks.projection_fitted(w.digest_)
        idx.set_projection(w)
        return True
