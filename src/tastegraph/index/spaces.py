"""The indexes of one installation: one per vector space, kept in step with the store.

The store is the source of truth (raw vectors + an append-only change log). Each index records
the last change it applied (its watermark); ``sync()`` replays the rest, so an index saved before a
crash, or not saved at all, catches up on the next open and nothing is lost or duplicated.
The image space may be PCA-whitened: the whitener is fitted on the catalog's own vectors once
there are enough of them, and its digest is part of the image index's provenance, so a refit
rebuilds the index from the stored raw vectors instead of mixing two projections.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import IndexMismatch, NotFound, TastegraphError
from tastegraph.index import IndexMeta, VectorIndex, open_index
from tastegraph.models.whiten import l2_normalize

__all__ = ["PROJECTION_KEY", "SpaceIndexes", "VectorSource", "load_projection"]

# The store record (kv) naming the whitening projection the image space uses.
PROJECTION_KEY = "image_projection"

F32 = NDArray[np.float32]

log = logging.getLogger(__name__)

# Stored vectors are made from the image files: another model's vectors are remade from them
# (catalog.reencode), or the setting goes back to the model that made them.
REENCODE_HINT = (
    "re-encode the catalog with the current models: `tastegraph reindex --reencode` (it reads "
    "each pin's original file again), or set TASTEGRAPH_IMAGE_MODEL back to the model the "
    "catalog was built with (its name starts the model id, e.g. lite0)"
)


class VectorSource(Protocol):
    """What the indexes need from the store."""

    def get_vectors(
        self, space: str, ids: Any = None
    ) -> tuple[NDArray[np.int64], F32, list[str]]: ...

    def changes_since(self, seq: int) -> tuple[int, list[int], list[int]]: ...


class Projection(Protocol):
    @property
    def digest_(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def transform(self, x: F32) -> F32: ...


class RecordSource(Protocol):
    """The store's small named records (where the projection is recorded) and its artefact
    files (where its bytes are published)."""

    def get_kv(self, key: str, default: Any = None) -> Any: ...

    def get_artefact(self, digest: str) -> bytes: ...


def load_projection(
    records: RecordSource, data_dir: Path, *, model_id: str, dim: int
) -> tuple[Projection | None, str | None]:
    """The recorded whitening projection and the record's digest (``(None, None)``: none).

    The file is the data dir's own when this process's data dir wrote it; else it is fetched
    from the store's artefacts once (``store/artefact_cache.py``). A stale projection (another
    model or dim) is derived data: it is not used (the digest is still returned, so a process
    does not take the same record for a new one), and is refitted later.
    """
    from tastegraph.models.whiten import PCAWhitener
    from tastegraph.store.artefact_cache import fetch_file

    rec = records.get_kv(PROJECTION_KEY)
    if not rec:
        return None, None
    digest = rec.get("digest")
    path = data_dir / str(rec.get("path", ""))
    if not path.is_file() and rec.get("artefact"):
        try:
            path = fetch_file(records, str(rec["artefact"]), data_dir)
        except (TastegraphError, OSError) as e:
            log.warning("the store's image projection %s could not be fetched: %s", digest, e)
    if not path.is_file():
        # Recorded by a version that kept it only as a file in another data dir (another
        # machine). Without it the image space runs unwhitened, so say so, with the fix.
        log.warning(
            "the store's image projection %s is not in this data dir (%s) nor in the store: "
            "image search runs without it; copy DATA_DIR/models/ from the machine that "
            "ingested (docs/deploy.md)",
            rec.get("path"),
            data_dir,
        )
        return None, digest
    try:
        return PCAWhitener.load(path, model_id=model_id, dim=dim), digest
    except Exception:
        return None, digest


def _l2(x: F32) -> F32:
    return l2_normalize(x, axis=1)


class SpaceIndexes:
    """All vector indexes of one data dir, kept in step with the store."""

    def __init__(
        self,
        root: Path,
        kind: str,
        source: VectorSource,
        model_ids: dict[str, tuple[str, int]],
        digest: str,
    ) -> None:
        self.root = root
        self.kind = kind
        self.source = source
        self.model_ids = model_ids  # space -> (model_id, raw dim)
        self.digest = digest
        self.projection: Projection | None = None
        # The digest of the projection record these indexes reflect (see load_projection).
        self.projection_record: str | None = None
        self._lock = threading.RLock()
        self._indexes: dict[str, VectorIndex] = {}
        # Changes applied to an index since it was last saved (opening one catches it up).
        self._unsaved: dict[str, int] = {}

    def set_projection(self, projection: Projection | None, record: str | None = None) -> None:
        """Use ``projection`` for the image space (its index is rebuilt); ``record``: the digest
        of the store record it came from (the projection's own digest by default)."""
        with self._lock:
            self.projection = projection
            self.projection_record = record or (projection.digest_ if projection else None)
            self._indexes.pop("image", None)

    def _meta(self, space: str) -> IndexMeta:
        model_id, dim = self.model_ids[space]
        digest = self.digest
        dtype = "f32"
        if space == "image" and self.projection is not None:
            dim = self.projection.dim
            digest = f"{digest}-{self.projection.digest_}"
            dtype = "f16"
        return IndexMeta(
            space=space, model_id=model_id, dim=dim, metric="ip", digest=digest, dtype=dtype
        )

    def to_index_space(self, space: str, vecs: F32) -> F32:
        """Raw model vectors -> the vectors this space's index holds."""
        vecs = np.asarray(vecs, dtype=np.float32)
        if vecs.ndim == 1:
            vecs = vecs[None, :]
        if space == "image" and self.projection is not None:
            vecs = self.projection.transform(vecs)
        return _l2(vecs)

    def get(self, space: str) -> VectorIndex:
        with self._lock:
            idx = self._indexes.get(space)
            if idx is None:
                idx = self._open(space)
                self._indexes[space] = idx
            return idx

    def _open(self, space: str) -> VectorIndex:
        path = self.root / space
        meta = self._meta(space)
        try:
            idx = open_index(self.kind, path, meta)
        except IndexMismatch:
            # Derived data: rebuild from the store's raw vectors rather than refuse to serve.
            idx = self._rebuild(space, meta, path)
        self._unsaved[space] = self._catch_up(space, idx)
        return idx

    def _rebuild(self, space: str, meta: IndexMeta, path: Path) -> VectorIndex:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        idx = open_index(self.kind, path, meta)
        idx.watermark = 0
        return idx

    def _catch_up(self, space: str, idx: VectorIndex) -> int:
        last, ups, dels = self.source.changes_since(int(idx.watermark))
        if last == idx.watermark:
            return 0
        if dels:
            present = [d for d in dels if d in idx]
            if present:
                idx.remove(np.array(present, np.int64))
        model_id, _ = self.model_ids[space]
        for start in range(0, len(ups), 20000):
            ids, mat, models = self.source.get_vectors(space, ups[start : start + 20000])
            if len(ids) == 0:
                continue
            keep = np.array([m == model_id for m in models])
            if not keep.all():
                # Vectors from another model cannot share this index: say how to fix it.
                others = sorted({m for m, k in zip(models, keep, strict=True) if not k})
                raise IndexMismatch(
                    f"{int((~keep).sum())} stored {space} vectors come from another model "
                    f"({', '.join(others)}; this installation runs {model_id})",
                    hint=REENCODE_HINT,
                )
            idx.add(ids, self.to_index_space(space, mat))
        idx.watermark = last
        return len(ups) + len(dels)

    def sync(self, save: bool = True) -> dict[str, int]:
        """Apply pending store changes to every open or on-disk index; optionally save them.

        Returns, per space, the changes this call applied; with ``save``, every change the
        saved index holds that its last save did not, including those applied when the index
        was opened (a rebuilt index replays the whole log there).
        """
        applied: dict[str, int] = {}
        with self._lock:
            for space in self.model_ids:
                idx = self.get(space)
                n = self._catch_up(space, idx)
                if save:
                    applied[space] = self._unsaved.pop(space, 0) + n
                    if applied[space]:
                        idx.save(self.root / space)
                else:
                    applied[space] = n
                    self._unsaved[space] = self._unsaved.get(space, 0) + n
        return applied

    def save(self) -> None:
        with self._lock:
            for space, idx in self._indexes.items():
                idx.save(self.root / space)
                self._unsaved.pop(space, None)

    def vector_of(self, space: str, pin_id: int) -> F32:
        """The stored raw vector of one pin, mapped into this space's index."""
        ids, mat, _ = self.source.get_vectors(space, [pin_id])
        if len(ids) == 0:
            raise NotFound(f"pin {pin_id} has no {space} vector")
        return self.to_index_space(space, mat)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with self._lock:
            for space in self.model_ids:
                idx = self.get(space)
                m = idx.meta
                out[space] = {
                    "size": len(idx),
                    "dim": m.dim,
                    "model_id": m.model_id,
                    "dtype": m.dtype,
                    "watermark": int(idx.watermark),
                }
        return out
