"""The store's ports: one small protocol per repository, and the plain records they speak.

Each protocol names exactly the methods callers use; a service asks for the narrowest one it
needs (``PinReader`` rather than the whole ``Store``), so a fake or a second backend only has to
provide that. :class:`Store` combines them for the composition root (``app.build``)::

    from tastegraph.store import open_store
    from tastegraph.store.ports import PinReader

    def titles(pins: PinReader, ids: list[int]) -> list[str]:
        return [p.title for p in pins.get_pins(ids).values()]

    titles(open_store("sqlite:///tmp/x.db"), [1, 2])

Every backend passes ``tests/contract/store/test_store.py``, which is typed to these protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from tastegraph.domain import Pin, QuarantineEntry

__all__ = [
    "PIN_RECORD_FIELDS",
    "ArtefactFiles",
    "ArtefactInfo",
    "Artefacts",
    "AuditLog",
    "ChangeLog",
    "Duplicates",
    "Engagement",
    "EventLog",
    "EventSelection",
    "EventTimes",
    "IngestRuns",
    "KeywordDoc",
    "KeywordIndex",
    "KeywordSearch",
    "LogTips",
    "NewPin",
    "NoticeConnection",
    "Notices",
    "PersonalData",
    "PinMeta",
    "PinReader",
    "PinWriter",
    "SQLAccess",
    "Store",
    "TokenInfo",
    "Tokens",
    "VectorEdits",
    "Vectors",
]

# space -> (model_id, vector)
VectorEdits = dict[str, tuple[str, NDArray[np.float32]]]

# What ``PinReader.pin_records`` returns per pin, in this order (``Pin.to_dict``'s, no JSON
# left encoded): id, content_hash, title, description, link, board, tags, labels, attributes,
# source, phash, width, height, format, dup_group, created_at, updated_at.
PIN_RECORD_FIELDS = (
    "id", "content_hash", "title", "description", "link", "board", "tags", "labels",
    "attributes", "source", "phash", "width", "height", "format", "dup_group", "created_at",
    "updated_at",
)  # fmt: skip

# ``(id, title, board, labels, created_at, dup_group)``: the columns the feed engine builds
# its pin table from, without decoding a whole ``Pin`` per row.
PinMeta = tuple[int, str, str, Any, str, "int | None"]


@dataclass
class NewPin:
    """Everything ingest knows about one new image."""

    content_hash: str
    source: str
    vectors: VectorEdits
    title: str = ""
    description: str = ""
    link: str = ""
    board: str = ""
    tags: list[str] = field(default_factory=list)
    labels: list[tuple[str, float]] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    phash: str = ""
    width: int = 0
    height: int = 0
    format: str = ""
    thumbnail: bytes | None = None


@dataclass
class TokenInfo:
    id: int
    name: str
    role: str
    created_at: str
    revoked_at: str | None = None


@dataclass(frozen=True)
class KeywordDoc:
    """One pin's words as the keyword index holds them (``tags``: the words people wrote)."""

    id: int
    title: str
    description: str
    tags: str


class PinReader(Protocol):
    """Reading pins::

    pin = store.get_pin(7)                      # NotFound when it does not exist
    page = store.list_pins(offset=0, limit=20, board="shoes")
    """

    def get_pin(self, pin_id: int) -> Pin: ...
    def get_pins(self, ids: Iterable[int]) -> dict[int, Pin]: ...
    def get_thumbnail(self, pin_id: int) -> bytes: ...
    def list_pins(
        self, *, offset: int = 0, limit: int = 50, board: str | None = None
    ) -> list[Pin]: ...
    def count_pins(self) -> int: ...
    def find_by_hash(self, content_hash: str) -> int | None: ...
    def filter_ids(
        self,
        *,
        board: str | None = None,
        tag: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> NDArray[np.int64] | None: ...
    def pin_records(self, ids: Iterable[int]) -> list[tuple[Any, ...]]: ...
    def pin_meta(self, ids: Sequence[int] | None = None) -> list[PinMeta]: ...


class PinWriter(Protocol):
    """Adding, editing and deleting pins; each call is one transaction that also writes the
    vectors, the keyword index and the change log::

    [(pin_id, created)] = store.add_pins([NewPin(content_hash=h, source="a.jpg", vectors={})])
    store.update_pin(pin_id, {"title": "Red dress"})
    """

    def add_pins(self, items: Sequence[NewPin]) -> list[tuple[int, bool]]: ...
    def update_pin(
        self, pin_id: int, fields: dict[str, Any], vectors: VectorEdits | None = None
    ) -> Pin: ...
    def update_pins(
        self,
        edits: Sequence[tuple[int, dict[str, Any], VectorEdits | None]],
        *,
        skip_missing: bool = False,
    ) -> list[Pin]: ...
    def delete_pin(self, pin_id: int) -> None: ...


class Vectors(Protocol):
    """Raw vectors per (pin, space), so any index can be rebuilt from the store::

    ids, matrix, model_ids = store.get_vectors("image")
    """

    def get_vectors(
        self, space: str, ids: Sequence[int] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]: ...
    def stale_vector_ids(self, space: str, model_id: str) -> list[int]: ...


class ChangeLog(Protocol):
    """The ordered log of pin upserts and deletes that indexes replay from their watermark::

    last, upserted, deleted = store.changes_since(watermark)
    """

    def changes_since(self, seq: int) -> tuple[int, list[int], list[int]]: ...
    def last_change(self) -> int: ...


class LogTips(Protocol):
    """The tips of the change log and the event log together, in one read: what a serving
    process compares before each read it answers (``workers.catchup``)::

    change_seq, event_id = store.log_tips()
    """

    def log_tips(self) -> tuple[int, int]: ...


class NoticeConnection(Protocol):
    """A connection that hears what other processes announce (PostgreSQL ``LISTEN``); what
    ``store.notices()`` opens. ``wait`` returns the announcements (``"changes"``, ``"events"``,
    ``"kv"``) that arrived within ``timeout`` seconds, possibly none, and raises when the
    connection is lost."""

    def wait(self, timeout: float) -> list[str]: ...

    def close(self) -> None: ...


class Notices(Protocol):
    """How to hear other processes' writes as they commit (``workers.listener``)::

    connect = store.notices()  # None on SQLite: poll log_tips() instead
    """

    def notices(self) -> Callable[[], NoticeConnection] | None: ...


class KeywordSearch(Protocol):
    """BM25 over the words people wrote::

    store.fts_search("red dress", limit=10)  # [(pin_id, score), ...] best first
    """

    def fts_search(self, text: str, limit: int = 100) -> list[tuple[int, float]]: ...


class KeywordIndex(Protocol):
    """A backend's full-text index (FTS5 today, PostgreSQL's ``tsvector`` next). Writes join
    the caller's transaction, so a pin and its words commit together::

    with db.write() as conn:
        index.add(conn, [KeywordDoc(1, "Red dress", "", "linen")])
    index.search("dress", 10)  # [(1, 0.42)]
    """

    def add(self, conn: sa.Connection, docs: Sequence[KeywordDoc]) -> None: ...
    def update(self, conn: sa.Connection, docs: Sequence[KeywordDoc]) -> None: ...
    def delete(self, conn: sa.Connection, ids: Sequence[int]) -> None: ...
    def search(self, text: str, limit: int = 100) -> list[tuple[int, float]]: ...


class Duplicates(Protocol):
    """Perceptual hashes and the near-duplicate groups found from them."""

    def phashes(self) -> tuple[NDArray[np.int64], NDArray[np.uint64]]: ...
    def set_dup_groups(self, groups: Mapping[int, int | None]) -> None: ...
    def dup_groups(self) -> dict[int, list[int]]: ...


class IngestRuns(Protocol):
    """Ingest runs, the sources they finished, and what they quarantined::

    store.start_run("r1", "folder")
    store.add_quarantine("r1", [QuarantineEntry("bad.jpg", "truncated", "cut short")])
    store.finish_run("r1", "partial", {"added": 0})
    """

    def known_source(self, ref: str) -> str | None: ...
    def known_sources(self) -> set[str]: ...
    def source_pins(self) -> dict[str, int | None]: ...
    def start_run(self, run_id: str, source: str) -> None: ...
    def finish_run(self, run_id: str, status: str, counts: dict[str, int]) -> None: ...
    def running_runs(self) -> list[tuple[str, str, str]]: ...
    def interrupt_runs(self, run_ids: Sequence[str], *, forget: Sequence[str] = ()) -> None: ...
    def add_quarantine(self, run_id: str, entries: Sequence[QuarantineEntry]) -> None: ...
    def quarantine_report(self, run_id: str | None = None) -> list[QuarantineEntry]: ...


class Artefacts(Protocol):
    """Small JSON records by key (the projection, model choices, run owners)::

    store.set_kv("projection", {"dim": 64})
    store.get_kv("projection", default=None)
    """

    def get_kv(self, key: str, default: Any = None) -> Any: ...
    def set_kv(self, key: str, value: Any) -> None: ...
    def delete_kv(self, key: str) -> None: ...


@dataclass(frozen=True)
class ArtefactInfo:
    """One published version of a named file (the bytes: ``get_artefact(digest)``)."""

    name: str
    digest: str  # SHA-256 of the bytes, hex
    size: int
    created_at: str
    provenance: dict[str, Any]


class ArtefactFiles(Protocol):
    """Files any node can fetch from the store (the trained feed model, the projection)::

    info = store.put_artefact("feed_model", data, {"version": "v1"})
    store.get_artefact(info.digest) == data
    store.latest_artefact("feed_model")  # the newest published under that name
    """

    def put_artefact(
        self, name: str, data: bytes, provenance: Mapping[str, Any] | None = None
    ) -> ArtefactInfo: ...
    def get_artefact(self, digest: str) -> bytes: ...
    def latest_artefact(self, name: str) -> ArtefactInfo | None: ...
    def list_artefacts(self, name: str | None = None) -> list[ArtefactInfo]: ...


class Tokens(Protocol):
    """API tokens, stored hashed::

    info, secret = store.create_token("ci", "editor")
    store.verify_token(secret)  # TokenInfo, or None once revoked
    """

    def create_token(self, name: str, role: str) -> tuple[TokenInfo, str]: ...
    def verify_token(self, secret: str) -> TokenInfo | None: ...
    def list_tokens(self) -> list[TokenInfo]: ...
    def revoke_token(self, token_id: int, *, allow_last_admin: bool = False) -> None: ...


class AuditLog(Protocol):
    """Who did what, newest first::

    store.audit(token_id, "admin", "revoke_token", "3")
    store.audit_entries(limit=20)
    """

    def audit(self, token_id: int | None, role: str, action: str, target: str) -> None: ...
    def audit_entries(self, limit: int = 100) -> list[dict[str, Any]]: ...


class Engagement(Protocol):
    """Users, their boards and the pins saved on them::

    user = store.create_user("ann")
    board = store.create_board(user["id"], "shoes")
    store.save_pin(board["id"], 7)  # False when it was already there
    """

    def create_user(self, handle: str, name: str = "") -> dict[str, Any]: ...
    def get_user(self, user_id: int) -> dict[str, Any]: ...
    def list_users(self, offset: int = 0, limit: int = 50) -> list[dict[str, Any]]: ...
    def user_ids(self, limit: int) -> list[int]: ...
    def create_board(self, user_id: int, name: str, description: str = "") -> dict[str, Any]: ...
    def get_board(self, board_id: int) -> dict[str, Any]: ...
    def user_boards(self, user_id: int) -> list[dict[str, Any]]: ...
    def save_pin(self, board_id: int, pin_id: int) -> bool: ...
    def board_edges(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]: ...


class PersonalData(Protocol):
    """One person's data across tables: exported whole, or erased in one transaction::

    everything = store.user_export(7)  # {"user", "boards" (with their saves), "events"}
    store.erase_user(7, actor=(token_id, role))  # {"erasure": ref, "boards", "saves", "events"}
    """

    def user_export(self, user_id: int) -> dict[str, Any]: ...
    def erase_user(self, user_id: int, *, actor: tuple[int | None, str]) -> dict[str, Any]: ...


class EventSelection(Protocol):
    """Which logged events to count, list or delete (``engagement.events.EventFilter`` is
    one): every given criterion must hold; ``future``/``invalid`` are judged against an
    :class:`EventTimes`."""

    @property
    def user_id(self) -> int | None: ...
    @property
    def pin_id(self) -> int | None: ...
    @property
    def kind(self) -> str | None: ...
    @property
    def after(self) -> float | None: ...
    @property
    def before(self) -> float | None: ...
    @property
    def key(self) -> str | None: ...
    @property
    def min_id(self) -> int | None: ...
    @property
    def max_id(self) -> int | None: ...
    @property
    def future(self) -> bool: ...
    @property
    def invalid(self) -> bool: ...
    @property
    def all(self) -> bool: ...
    def is_empty(self) -> bool: ...
    def to_dict(self) -> dict[str, Any]: ...


class EventTimes(Protocol):
    """The accepted event times, epoch seconds, both ends included
    (``engagement.events.TimeWindow``)."""

    @property
    def min_ts(self) -> float: ...
    @property
    def max_ts(self) -> float: ...


class EventLog(Protocol):
    """The engagement log: idempotent by ``key``, read in id order, deleted only audited::

    store.add_events([{"key": "k1", "user_id": 1, "pin_id": 7, "kind": "click", "ts": 1.0}])
    store.events_since(after_id=0, limit=1000)
    """

    def existing_ids(self, table: str, ids: Iterable[int]) -> set[int]: ...
    def add_events(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]: ...
    def events_since(self, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]: ...
    def event_columns(
        self, after_id: int = 0, limit: int | None = None
    ) -> list[tuple[Any, ...]]: ...
    def last_event_id(self) -> int: ...
    def count_events(
        self, where: EventSelection | None = None, window: EventTimes | None = None
    ) -> int: ...
    def find_events(
        self, where: EventSelection, window: EventTimes, limit: int = 100
    ) -> list[dict[str, Any]]: ...
    def delete_events(
        self,
        where: EventSelection,
        window: EventTimes,
        *,
        actor: tuple[int | None, str],
        note: dict[str, Any] | None = None,
        keep: Callable[[Iterator[dict[str, Any]]], None] | None = None,
    ) -> int: ...
    def events_generation(self) -> str | None: ...
    def event_stats(self, window: EventTimes) -> dict[str, Any]: ...


class SQLAccess(Protocol):
    """Raw transactions on an SQL backend: for tests and maintenance tools, never services."""

    url: str

    def read(self) -> AbstractContextManager[sa.Connection]: ...
    def write(self) -> AbstractContextManager[sa.Connection]: ...
    def close(self) -> None: ...


class Store(
    PinReader,
    PinWriter,
    Vectors,
    ChangeLog,
    LogTips,
    Notices,
    KeywordSearch,
    Duplicates,
    IngestRuns,
    Artefacts,
    ArtefactFiles,
    Tokens,
    AuditLog,
    Engagement,
    PersonalData,
    EventLog,
    SQLAccess,
    Protocol,
):
    """Every repository at once: what ``open_store`` returns and ``app.build`` wires."""
