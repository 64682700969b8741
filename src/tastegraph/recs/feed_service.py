"""Home feed and related pins over the store: builds the engine, feeds it events in real time,
trains it, and hot-swaps trained models without a restart."""

from __future__ import annotations

import base64
import json
import threading
import time
import zlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tastegraph.errors import InvalidInput

if TYPE_CHECKING:
    from tastegraph.app import App
    from tastegraph.recs.feed import Event, FeedEngine, FeedItem

__all__ = ["FeedService", "decode_cursor", "encode_cursor"]

MODEL_KEY = "recs_model"
MAX_CURSOR_IDS = 2000


def encode_cursor(served: list[int]) -> str:
    """Opaque, stateless pagination cursor: the pins already served in this feed session."""
    raw = json.dumps(served[-MAX_CURSOR_IDS:], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(zlib.compress(raw)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> list[int]:
    if not cursor:
        return []
    try:
        pad = "=" * (-len(cursor) % 4)
        ids = json.loads(zlib.decompress(base64.urlsafe_b64decode(cursor + pad)))
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise ValueError("not a list of ids")
        return ids
    except (ValueError, zlib.error) as e:
        raise InvalidInput("bad cursor", hint="pass the next_cursor of the previous page") from e


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0


def catalog_params(vectors: np.ndarray, seed: int = 0) -> Any:
    """Feed parameters adapted to this catalog's vectors.

    A hide pushes down *look-alikes*: pins more similar to the hidden one than chance. What
    "more than chance" means depends on the embedding, so the threshold is the 99th percentile
    of cosines between random pairs of this catalog (serving-only: no retraining needed).
    """
    from tastegraph.recs.feed import FeedParams

    n = len(vectors)
    if n < 50:
        return FeedParams()
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, (2, 4000))
    keep = a != b
    cos = np.einsum("ij,ij->i", vectors[a[keep]], vectors[b[keep]])
    threshold = float(np.clip(np.quantile(cos, 0.99), 0.2, 0.9))
    return FeedParams(hide_threshold=threshold)


def to_engine_event(row: dict[str, Any]) -> Event:
    from tastegraph.recs.feed import Event

    surface = str(row.get("surface") or "")
    board = surface.split(":", 1)[1] if surface.startswith("board:") else ""
    return Event(
        user=int(row["user_id"]),
        pin=int(row["pin_id"]),
        kind=str(row["kind"]),
        ts=float(row["ts"]),
        dwell_ms=float(row.get("dwell_ms") or 0.0),
        position=row.get("position"),
        surface=surface,
        request_id=str(row.get("request_id") or ""),
        board=board,
    )


class FeedService:
    """The one entry point for feeds, related pins and training."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._engine: FeedEngine | None = None
        self._version: str | None = None
        self._lock = threading.RLock()
        self._last_event_id = 0

    # ------------------------------------------------------------- engine
    def _pin_table(self, ids: list[int] | None = None) -> Any:
        from tastegraph.recs.feed import PinTable

        app = self.app
        pid, mat, _ = app.store.get_vectors("image", ids)
        vecs = app.indexes.to_index_space("image", mat) if len(pid) else mat
        pins = app.store.get_pins(pid.tolist())
        rows = [pins[int(i)] for i in pid]
        return PinTable(
            ids=pid,
            vectors=vecs if len(pid) else np.zeros((0, app.encoders.image.dim), np.float32),
            boards=[p.board for p in rows],
            labels=[p.labels[0][0] if p.labels else "" for p in rows],
            titles=[p.title or (p.labels[0][0] if p.labels else f"pin {p.id}") for p in rows],
            created_at=np.array([_epoch(p.created_at) for p in rows], np.float64),
            dup_group=np.array([-1 if p.dup_group is None else p.dup_group for p in rows]),
            blocked=np.zeros(len(rows), bool),
        )

    @property
    def engine(self) -> FeedEngine:
        with self._lock:
            if self._engine is None:
                from tastegraph.recs.feed import FeedEngine

                table = self._pin_table()
                engine = FeedEngine(table, params=catalog_params(table.vectors))
                rec = self.app.store.get_kv(MODEL_KEY)
                if rec:
                    engine.load(self.app.settings.data_dir / rec["path"])
                    self._version = rec["version"]
                self._engine = engine
                self._replay()
                self.app.engagement.subscribe(self._on_events)
            return self._engine

    def _replay(self) -> None:
        """Apply logged events the engine has not seen (at start, then whatever arrives)."""
        assert self._engine is not None
        while True:
            rows = self.app.store.events_since(self._last_event_id, limit=200_000)
            if not rows:
                return
            self._engine.observe([to_engine_event(r) for r in rows])
            self._last_event_id = int(rows[-1]["id"])

    def _on_events(self, rows: list[dict[str, Any]]) -> None:
        # Real time: the next feed call sees these; the store ids catch up in _replay later.
        with self._lock:
            if self._engine is not None:
                self._engine.observe([to_engine_event(r) for r in rows])
                self._last_event_id = max(self._last_event_id, self.app.store.last_event_id())

    def add_pins(self, ids: list[int]) -> None:
        with self._lock:
            if self._engine is not None and ids:
                self._engine.add_pins(self._pin_table(ids))

    # -------------------------------------------------------------- reads
    def feed(
        self, user_id: int, n: int = 25, cursor: str | None = None, now: float | None = None
    ) -> tuple[list[FeedItem], str]:
        """The next page of a user's home feed and the cursor for the page after it."""
        if not 1 <= n <= 100:
            raise InvalidInput("n must be between 1 and 100")
        self.app.store.get_user(user_id)
        served = decode_cursor(cursor)
        items = self.engine.feed(user_id, n, time.time() if now is None else now, exclude=served)
        return items, encode_cursor(served + [it.pin for it in items])

    def related(self, pin_id: int, n: int = 20, now: float | None = None) -> list[FeedItem]:
        """Pins related to ``pin_id``: visual similarity fused with co-engagement."""
        if not 1 <= n <= 100:
            raise InvalidInput("n must be between 1 and 100")
        self.app.store.get_pin(pin_id)
        return self.engine.related(pin_id, n, time.time() if now is None else now)

    # ------------------------------------------------------------ training
    def train(self, now: float | None = None) -> dict[str, Any]:
        """Fit every learned part on the whole event log; publish it as a new model version."""
        from tastegraph.recs.feed import FeedEngine

        t0 = time.perf_counter()
        rows = self.app.store.events_since(0)
        table = self._pin_table()
        engine = FeedEngine(table, params=catalog_params(table.vectors))
        engine.fit([to_engine_event(r) for r in rows], time.time() if now is None else now)
        version = time.strftime("%Y%m%dT%H%M%S") + f"-{engine.digest()[:8]}"
        rel = Path("models") / "recs" / version
        engine.save(self.app.settings.data_dir / rel)
        self.app.store.set_kv(
            MODEL_KEY, {"path": str(rel), "version": version, "digest": engine.digest()}
        )
        self.reload()
        return {
            "version": version,
            "events": len(rows),
            "seconds": round(time.perf_counter() - t0, 2),
            **engine.fit_report_,
        }

    def reload(self) -> bool:
        """Load a newer published model into the running engine (hot swap, no restart)."""
        rec = self.app.store.get_kv(MODEL_KEY)
        with self._lock:
            if not rec or rec["version"] == self._version or self._engine is None:
                return False
            self._engine.load(self.app.settings.data_dir / rec["path"])
            self._version = rec["version"]
            return True

    @property
    def version(self) -> str | None:
        return self._version
