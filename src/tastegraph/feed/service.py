"""Home feed and related pins over the store: builds the engine, feeds it events in real time,
trains it, and hot-swaps trained models without a restart.

Events reach the engine by id: the service remembers the last event id it applied and reads
every newer one from the store, whether this process wrote it (``EventsRecorded`` on the bus
triggers a catch-up at once, so the next feed call reflects a save or a hide) or another
process did (``tastegraph events import`` while the server runs: the next local event,
or :meth:`FeedService.catch_up`, which the server calls every few seconds, applies them). The
log is read as columns straight into an ``EventBatch``, never as one object per event, so a
server starts on a million events in seconds.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tastegraph.eligibility import Context, Eligibility
from tastegraph.engagement.bus import EventBus, EventsRecorded, PinsAdded, PinsDeleted
from tastegraph.errors import InvalidInput, NotFound, TastegraphError
from tastegraph.feed.hygiene import REASONS, SkipCounter
from tastegraph.feed.ports import FeedIndexes, FeedStore
from tastegraph.feed.store_view import load_event_batch, pin_meta, pin_table, user_ids
from tastegraph.models.base import Encoders
from tastegraph.settings import FeedSettings, Settings
from tastegraph.store.artefact_cache import fetch_folder, pack_folder

if TYPE_CHECKING:
    from tastegraph.feed.data import FeedItem, FeedParams, PinTable
    from tastegraph.feed.engine import FeedEngine
    from tastegraph.index import VectorIndex

__all__ = ["FeedService", "catalog_params", "decode_cursor", "encode_cursor", "feed_params"]

log = logging.getLogger("tastegraph.feeds")

MODEL_KEY = "recs_model"
MAX_CURSOR_IDS = 2000
REPLAY_CHUNK = 250_000  # events read from the store per query
MAX_KNOWN_USERS = 1_000_000


def encode_cursor(served: list[int]) -> str:
    """Opaque, stateless pagination cursor: the pins already served in this feed session."""
    raw = json.dumps(served[-MAX_CURSOR_IDS:], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(zlib.compress(raw)).decode().rstrip("=")


def _is_id(value: Any) -> bool:
    return type(value) is int and 0 <= value < 2**63


def decode_cursor(cursor: str | None) -> list[int]:
    if not cursor:
        return []
    try:
        pad = "=" * (-len(cursor) % 4)
        ids = json.loads(zlib.decompress(base64.urlsafe_b64decode(cursor + pad)))
        if not isinstance(ids, list) or not all(_is_id(i) for i in ids):
            raise ValueError("not a list of ids")
        return ids
    except (ValueError, zlib.error) as e:
        raise InvalidInput("bad cursor", hint="pass the next_cursor of the previous page") from e


def catalog_params(
    vectors: np.ndarray, seed: int = 0, base: FeedParams | None = None, fixed: Collection[str] = ()
) -> FeedParams:
    """Feed parameters adapted to this catalog's vectors.

    A hide pushes down *look-alikes*: pins more similar to the hidden one than chance. What
    "more than chance" means depends on the embedding, so the threshold is the 99th percentile
    of cosines between random pairs of this catalog (serving-only: no retraining needed).
    ``base`` holds the configured parameters (default: ``FeedParams()``); a name in ``fixed``
    (set explicitly, e.g. ``hide_threshold`` in ``[feed]``) is not adapted.
    """
    from tastegraph.feed.data import FeedParams

    params = base if base is not None else FeedParams()
    n = len(vectors)
    if n < 50 or "hide_threshold" in fixed:
        return params
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, (2, 4000))
    keep = a != b
    cos = np.einsum("ij,ij->i", vectors[a[keep]], vectors[b[keep]])
    threshold = float(np.clip(np.quantile(cos, 0.99), 0.2, 0.9))
    return dataclasses.replace(params, hide_threshold=threshold)


def feed_params(feed: FeedSettings) -> FeedParams:
    """The engine's parameters from the ``[feed]`` settings (the same fields, see the test)."""
    from tastegraph.feed.data import FeedParams

    return FeedParams(**feed.model_dump())


class FeedService:
    """The one entry point for feeds, related pins and training."""

    def __init__(
        self,
        store: FeedStore,
        indexes: Callable[[], FeedIndexes],
        encoders: Callable[[], Encoders],
        settings: Settings,
        bus: EventBus,
        eligibility: Eligibility | None = None,
    ) -> None:
        self.store = store
        self.indexes = indexes
        self.encoders = encoders
        self.settings = settings
        self.eligibility = eligibility or Eligibility()
        # The event log's generation this service was made on (see workers.catchup): logged
        # events deleted since cannot be un-learned, the service is then replaced.
        self.events_generation = store.events_generation()
        self._engine: FeedEngine | None = None
        self._version: str | None = None
        self._lock = threading.RLock()
        self._last_event_id = 0
        # The store's catalog change sequence the engine's pin table reflects (see
        # ``catch_up_catalog``).
        self._catalog_seq = 0
        # Users seen to exist: the store never deletes users, so a positive answer stays true
        # and a feed request need not ask the store again.
        self._known_users: set[int] = set()
        # Health, for /ready and the log: stored events the engine could not use (by reason),
        # why the last build or catch-up failed, and when the engine last caught up.
        self.skipped = SkipCounter()
        self.skipped_pins: Counter[str] = Counter()
        self._logged_skips = 0
        self._build_error: str | None = None
        self._catch_up_error: str | None = None
        self._model_error: str | None = None
        self._failed_version: str | None = None
        self._caught_up_at = 0.0
        # Weakly: a service the app replaces (e.g. after a whitening refit) must not be kept
        # alive, and fed every event, by its subscriptions.
        bus.subscribe(EventsRecorded, self._on_events, weak=True)
        bus.subscribe(PinsAdded, self._on_pins_added, weak=True)
        bus.subscribe(PinsDeleted, self._on_pins_deleted, weak=True)

    # ------------------------------------------------------------- engine
    def _pin_table(self, ids: list[int] | None = None) -> PinTable:
        pid, mat, _ = self.store.get_vectors("image", ids)
        if len(pid):
            # A pin whose stored vector is NaN or zero cannot be ranked; it must not keep the
            # whole engine (every user's feed) from building.
            usable = np.isfinite(mat).all(axis=1) & (np.abs(mat).max(axis=1) > 0)
            if not usable.all():
                self.skipped_pins["bad_vector"] += int(np.count_nonzero(~usable))
                log.warning(
                    "feed engine: %d pins left out (stored image vector is NaN or zero): %s",
                    int(np.count_nonzero(~usable)),
                    pid[~usable][:20].tolist(),
                )
                pid, mat = pid[usable], mat[usable]
        vecs = self.indexes().to_index_space("image", mat) if len(pid) else mat
        meta = pin_meta(self.store, None if ids is None else pid.tolist())
        if not len(pid):
            vecs = np.zeros((0, self.encoders().image.dim), np.float32)
        return pin_table(pid, vecs, meta)

    def _shared_index(self, params: FeedParams) -> VectorIndex | None:
        """The application's image index, when it is of the kind the engine wants.

        It holds the same vectors (index space, keyed by pin id) and is kept in step with the
        store, so the engine need not build a second one of the whole catalog at start.
        """
        if self.settings.index.kind != params.index_kind:
            return None
        index: VectorIndex = self.indexes().get("image")
        return index

    def _new_engine(self) -> FeedEngine:
        from tastegraph.feed.engine import FeedEngine

        table = self._pin_table()
        feed = self.settings.feed
        params = catalog_params(table.vectors, base=feed_params(feed), fixed=feed.model_fields_set)
        return FeedEngine(
            table,
            params=params,
            index=self._shared_index(params),
            read_slots=params.read_slots or None,
        )

    @property
    def engine(self) -> FeedEngine:
        engine = self._engine
        if engine is not None:  # the usual case: no lock on the request path
            return engine
        with self._lock:
            if self._engine is None:
                try:
                    engine = self._build()
                except Exception as e:
                    self._build_error = f"{type(e).__name__}: {e}"
                    log.exception("could not build the feed engine")
                    raise
                self._build_error = None
                self._engine = engine
            return self._engine

    def _build(self) -> FeedEngine:
        # Read before the pin table: a change made while it is built is applied twice
        # (harmless: known pins are ignored) rather than missed.
        self._catalog_seq = self.store.last_change()
        self.skipped_pins = Counter()
        engine = self._new_engine()
        self._last_event_id = 0
        self.skipped = SkipCounter()
        self._logged_skips = 0
        self._load_model(engine)
        self._replay(engine)
        self._known_users.update(user_ids(self.store, MAX_KNOWN_USERS))
        engine.warm_up(time.time())
        return engine

    def _load_model(self, engine: FeedEngine) -> None:
        """The published model, if any; one that cannot be used leaves the untrained ranker.

        A model saved under other settings, or whose files were lost, must not keep the feeds
        down: it is reported (log, /ready) and ``tastegraph train`` publishes a fresh one.
        """
        rec = self.store.get_kv(MODEL_KEY)
        if not rec or rec.get("version") == self._failed_version:
            return
        try:
            engine.load(self._model_folder(rec))
        except (TastegraphError, OSError, ValueError, KeyError) as e:
            self._model_error = f"model {rec.get('version')!r} not loaded: {e}"
            self._failed_version = rec.get("version")
            log.warning("%s; serving without it (run `tastegraph train`)", self._model_error)
            return
        self._version = rec["version"]
        self._model_error = None

    def _model_folder(self, rec: dict[str, Any]) -> Path:
        """The published model's files: this data dir's own when it trained it, else the
        store's artefact, fetched once into the data dir's cache."""
        local: Path = self.settings.data_dir / str(rec["path"])
        if local.exists() or not rec.get("artefact"):
            return local
        return fetch_folder(self.store, str(rec["artefact"]), self.settings.data_dir)

    def status(self) -> dict[str, Any]:
        """The engine's health: ``state`` is ``ok``, ``not_built``, ``failed`` or ``stale``.

        ``stale``: the last catch-up with the event log failed, so feeds no longer reflect new
        events. ``skipped_events`` counts the stored events the engine could not use, by reason
        (``reasons`` says what each means); they are left out, never fatal.
        """
        skipped = dict(self.skipped)
        out: dict[str, Any] = {
            "state": "ok",
            "events_applied_to": self._last_event_id,
            "skipped_events": skipped,
        }
        if self.skipped_pins:
            out["skipped_pins"] = dict(self.skipped_pins)
        if skipped:
            out["reasons"] = {k: REASONS[k] for k in skipped if k in REASONS}
        if self._model_error:
            out["model_error"] = self._model_error
        if self._engine is None:
            out["state"] = "failed" if self._build_error else "not_built"
            if self._build_error:
                out["error"] = self._build_error
        elif self._catch_up_error:
            out["state"] = "stale"
            out["error"] = self._catch_up_error
            out["caught_up_at"] = self._caught_up_at
        return out

    def _note_skips(self) -> None:
        total = sum(self.skipped.values())
        if total > self._logged_skips:
            self._logged_skips = total
            log.warning("feed engine: %s (left out of feeds)", self.skipped.summary())

    def _replay(self, engine: FeedEngine) -> int:
        """Apply the logged events after the last one applied, in id order; returns how many.

        Ids are the store's order of commits, so reading ``id > last`` sees every event exactly
        once, whoever wrote it.
        """
        applied = 0
        while True:
            skipped = SkipCounter()
            batch, last = load_event_batch(
                self.store, self._last_event_id, REPLAY_CHUNK, skipped=skipped
            )
            if last == self._last_event_id:
                self._caught_up_at = time.time()
                self._note_skips()
                return applied
            before = engine.skipped_.copy()
            engine.observe(batch, now=time.time())
            by_engine = engine.skipped_ - before
            self.skipped.update(skipped + by_engine)
            self._last_event_id = last
            applied += len(batch) - sum(by_engine.values())

    def catch_up(self) -> int:
        """Apply events logged since the last ones applied (e.g. by another process)."""
        with self._lock:
            if self._engine is None:
                return 0
            try:
                applied = self._replay(self._engine)
            except Exception as e:
                # Feeds go on from the state they have; /ready says they are stale.
                self._catch_up_error = f"{type(e).__name__}: {e}"
                log.exception("feed engine could not catch up with the event log")
                return 0
            self._catch_up_error = None
            return applied

    def _on_events(self, event: EventsRecorded) -> None:
        # Real time: the next feed call sees these. They are read back by id rather than taken
        # from ``rows``, so that events another process logged in between are not skipped.
        # Never raises: the events are stored already, and a failure is reported by status().
        self.catch_up()

    def _on_pins_added(self, event: PinsAdded) -> None:
        self.add_pins(list(event.pin_ids))

    def _on_pins_deleted(self, event: PinsDeleted) -> None:
        self.catch_up_catalog()  # never served again, from the next feed call on

    def add_pins(self, ids: list[int]) -> None:
        with self._lock:
            if self._engine is not None and ids:
                self._engine.add_pins(self._pin_table(ids))

    def catch_up_catalog(self) -> int:
        """Take in pins added or deleted since the engine last looked, by this process or another
        (``tastegraph ingest`` while the server runs); returns how many changes were applied.

        New pins join the engine (they can be served at once, through visual similarity and
        their board); deleted ones are never served again. Of edits to known pins, the title is
        taken in (reasons quote it); the rest is left alone.
        """
        with self._lock:
            if self._engine is None:
                return 0
            last, ups, dels = self.store.changes_since(self._catalog_seq)
            if last == self._catalog_seq:
                return 0
            # Pins this process added (ingest, uploads) or edited are known already: only read
            # the others from the store.
            known = self._engine.knows(ups)
            new = [p for p, k in zip(ups, known, strict=True) if not k]
            if new:
                self._engine.add_pins(self._pin_table(new))
            edited = [p for p, k in zip(ups, known, strict=True) if k]
            if edited:
                # A title written after ingest is what reasons should quote from now on.
                meta = pin_meta(self.store, edited)
                ids = [p for p in edited if p in meta]
                self._engine.set_titles(ids, [meta[p][0] or "" for p in ids])
            if dels:
                self._engine.set_blocked(dels, True)
            self._catalog_seq = last
            return len(ups) + len(dels)

    # -------------------------------------------------------------- reads
    def feed(
        self, user_id: int, n: int = 25, cursor: str | None = None, now: float | None = None
    ) -> tuple[list[FeedItem], str]:
        """The next page of a user's home feed and the cursor for the page after it."""
        if not 1 <= n <= 100:
            raise InvalidInput("n must be between 1 and 100")
        if not _is_id(user_id):
            raise NotFound(f"user {user_id} does not exist")
        engine = self.engine  # built first: it also lists the users that exist
        if user_id not in self._known_users:
            self.store.get_user(user_id)  # NotFound for unknown users
            if len(self._known_users) >= MAX_KNOWN_USERS:
                self._known_users.clear()
            self._known_users.add(user_id)
        served = decode_cursor(cursor)
        now = time.time() if now is None else now
        ctx = Context(viewer=user_id, now=now)
        ruled = self.eligibility.excluded(ctx)
        exclude = served if ruled is None else served + ruled.tolist()
        items = self._visible(engine.feed(user_id, n, now, exclude=exclude), ctx)
        return items, encode_cursor(served + [it.pin for it in items])

    def _visible(self, items: list[FeedItem], ctx: Context) -> list[FeedItem]:
        """The items the eligibility rule lets this viewer see (order kept)."""
        if not items or not self.eligibility.rules:
            return items
        ok = self.eligibility.mask(np.array([it.pin for it in items], np.int64), ctx)
        return [it for it, keep in zip(items, ok, strict=True) if keep]

    def related(
        self, pin_id: int, n: int = 20, now: float | None = None, *, verify: bool = True
    ) -> list[FeedItem]:
        """Pins related to ``pin_id``: visual similarity fused with co-engagement.

        ``NotFound`` for a pin the store does not hold. ``verify=False`` leaves the check of a
        pin the engine knows to the caller, when it reads the pin from the store anyway (the
        API fetches it with the results, in one query).
        """
        if not 1 <= n <= 100:
            raise InvalidInput("n must be between 1 and 100")
        if not _is_id(pin_id):
            raise NotFound(f"pin {pin_id} does not exist")
        if verify:
            self.store.get_pin(pin_id)
        now = time.time() if now is None else now
        ctx = Context(now=now)
        ruled = self.eligibility.excluded(ctx)
        # Ask for as many more as the rule may drop, so that the page stays full.
        ask = n + (min(len(ruled), n) if ruled is not None else 0)
        try:
            return self._visible(self.engine.related(pin_id, ask, now), ctx)[:n]
        except NotFound:
            if not verify:
                self.store.get_pin(pin_id)  # the store's own error for unknown pins
            raise

    # ------------------------------------------------------------ training
    def train(self, now: float | None = None) -> dict[str, Any]:
        """Fit every learned part on the whole event log; publish it as a new model version."""
        from threadpoolctl import threadpool_limits

        t0 = time.perf_counter()
        skipped = SkipCounter()
        batch, _ = load_event_batch(self.store, skipped=skipped)
        engine = self._new_engine()
        # Fitting replays the log through thousands of small matrix products, which a BLAS
        # thread team only slows down (more so on a busy machine).
        with threadpool_limits(1, "blas"):
            engine.fit(batch, time.time() if now is None else now)
        version = time.strftime("%Y%m%dT%H%M%S") + f"-{engine.digest()[:8]}"
        rel = Path("models") / "recs" / version
        engine.save(self.settings.data_dir / rel)
        # Published in the store too: a process with another data dir (another machine)
        # fetches it by digest instead of needing this one's files.
        published = self.store.put_artefact(
            MODEL_KEY,
            pack_folder(self.settings.data_dir / rel),
            {"version": version, "settings": engine.digest(), "events": len(batch)},
        )
        self.store.set_kv(
            MODEL_KEY,
            {"path": str(rel), "version": version, "digest": engine.digest(),
             "artefact": published.digest},
        )  # fmt: skip
        self.reload()
        skipped.update(engine.fit_report_.get("skipped_events", {}))
        return {
            "version": version,
            "events": len(batch),
            "seconds": round(time.perf_counter() - t0, 2),
            **engine.fit_report_,
            "skipped_events": dict(skipped),
        }

    def reload(self) -> bool:
        """Load a newer published model into the running engine (hot swap, no restart)."""
        rec = self.store.get_kv(MODEL_KEY)
        with self._lock:
            if not rec or rec["version"] == self._version or self._engine is None:
                return False
            self._load_model(self._engine)
            return bool(self._version == rec["version"])

    @property
    def version(self) -> str | None:
        return self._version
