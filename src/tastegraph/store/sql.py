"""``SQLStore``: the facade that composes the repositories over one SQL database.

Each method hands over to the repository that owns it (``store/pins.py``, ``store/events.py``
...); callers that need only part of it should name the port from ``store/ports.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from tastegraph.domain import Pin, QuarantineEntry
from tastegraph.errors import InvalidInput, StoreUnavailable
from tastegraph.store.artefact_files import ArtefactFileRepository
from tastegraph.store.artefacts import ArtefactRepository
from tastegraph.store.audit import AuditRepository
from tastegraph.store.changes import ChangeLogRepository
from tastegraph.store.db import Database, Dialect, now_iso, safe_url
from tastegraph.store.duplicates import DuplicateRepository
from tastegraph.store.engagement import EngagementRepository
from tastegraph.store.events import EventRepository
from tastegraph.store.personal import PersonalDataRepository
from tastegraph.store.pins import PinRepository
from tastegraph.store.ports import (
    ArtefactInfo,
    EventSelection,
    EventTimes,
    KeywordIndex,
    NewPin,
    NoticeConnection,
    PinMeta,
    TokenInfo,
    VectorEdits,
)
from tastegraph.store.postgresql import PostgreSQLDialect
from tastegraph.store.runs import IngestRunRepository
from tastegraph.store.sqlite import SQLiteDialect
from tastegraph.store.tokens import TokenRepository
from tastegraph.store.vectors import VectorRepository

__all__ = ["DIALECTS", "NewPin", "SQLStore", "TokenInfo", "now_iso"]

# URL scheme -> the dialect module's implementation.
DIALECTS: dict[str, Callable[[], Dialect]] = {
    "sqlite": SQLiteDialect,
    "postgresql": PostgreSQLDialect,
}


def _open(url: str, dialect: Dialect, *, upgrade: bool) -> Database:
    """The database at ``url``, its schema checked; what goes wrong is said in one line."""
    try:
        db = Database(url, dialect)
    except (sa.exc.ArgumentError, ValueError) as e:  # ValueError: a port that is no number
        raise InvalidInput(
            f"bad store URL {safe_url(url)}: {e}",
            hint="write it as sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB",
        ) from None
    try:
        db.open_schema(upgrade=upgrade)
    except sa.exc.DBAPIError as e:
        db.close()
        reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e)
        raise StoreUnavailable(
            f"cannot open the store at {safe_url(url)}: {reason}",
            hint="check TASTEGRAPH_STORE_URL (host, port, user, password, database) and that "
            "the database server is running and accepts connections",
        ) from None
    except BaseException:
        db.close()
        raise
    return db


class SQLStore:
    """The default store. One instance per process; safe to share across threads."""

    def __init__(self, url: str, *, upgrade: bool = False) -> None:
        scheme = url.split(":", 1)[0].split("+", 1)[0]
        if scheme not in DIALECTS:
            raise InvalidInput(
                f"unsupported store URL {safe_url(url)}",
                hint="known schemes: sqlite:///PATH, postgresql+psycopg://USER@HOST/DB",
            )
        self.url = url
        self.db = _open(url, DIALECTS[scheme](), upgrade=upgrade)
        self.keywords: KeywordIndex = self.db.dialect.keyword_index(self.db)
        self.vectors = VectorRepository(self.db)
        self.pins = PinRepository(self.db, self.keywords, self.vectors)
        self.changes = ChangeLogRepository(self.db)
        self.duplicates = DuplicateRepository(self.db)
        self.runs = IngestRunRepository(self.db)
        self.artefacts = ArtefactRepository(self.db)
        self.artefact_files = ArtefactFileRepository(self.db)
        self.tokens = TokenRepository(self.db)
        self.audit_log = AuditRepository(self.db)
        self.engagement = EngagementRepository(self.db)
        self.events = EventRepository(self.db)
        self.personal = PersonalDataRepository(self.db)

    # ------------------------------------------------------------ SQL access
    def read(self) -> AbstractContextManager[sa.Connection]:
        return self.db.read()

    def write(self) -> AbstractContextManager[sa.Connection]:
        return self.db.write()

    def close(self) -> None:
        self.db.close()

    def notices(self) -> Callable[[], NoticeConnection] | None:
        """How to open a connection that hears other processes' writes as they commit
        (PostgreSQL ``LISTEN``), or None (SQLite: poll ``log_tips`` instead)."""
        return self.db.dialect.notices(self.url)

    # ------------------------------------------------------------------ pins
    def add_pins(self, items: Sequence[NewPin]) -> list[tuple[int, bool]]:
        return self.pins.add_pins(items)

    def update_pin(
        self, pin_id: int, fields: dict[str, Any], vectors: VectorEdits | None = None
    ) -> Pin:
        return self.pins.update_pin(pin_id, fields, vectors)

    def update_pins(
        self,
        edits: Sequence[tuple[int, dict[str, Any], VectorEdits | None]],
        *,
        skip_missing: bool = False,
    ) -> list[Pin]:
        return self.pins.update_pins(edits, skip_missing=skip_missing)

    def delete_pin(self, pin_id: int) -> None:
        self.pins.delete_pin(pin_id)

    def get_pin(self, pin_id: int) -> Pin:
        return self.pins.get_pin(pin_id)

    def get_pins(self, ids: Iterable[int]) -> dict[int, Pin]:
        return self.pins.get_pins(ids)

    def pin_records(self, ids: Iterable[int]) -> list[tuple[Any, ...]]:
        return self.pins.pin_records(ids)

    def pin_meta(self, ids: Sequence[int] | None = None) -> list[PinMeta]:
        return self.pins.pin_meta(ids)

    def get_thumbnail(self, pin_id: int) -> bytes:
        return self.pins.get_thumbnail(pin_id)

    def list_pins(self, *, offset: int = 0, limit: int = 50, board: str | None = None) -> list[Pin]:
        return self.pins.list_pins(offset=offset, limit=limit, board=board)

    def count_pins(self) -> int:
        return self.pins.count_pins()

    def find_by_hash(self, content_hash: str) -> int | None:
        return self.pins.find_by_hash(content_hash)

    def filter_ids(
        self,
        *,
        board: str | None = None,
        tag: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> NDArray[np.int64] | None:
        return self.pins.filter_ids(board=board, tag=tag, attributes=attributes)

    # -------------------------------------------- vectors, changes, keywords
    def get_vectors(
        self, space: str, ids: Sequence[int] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], list[str]]:
        return self.vectors.get_vectors(space, ids)

    def stale_vector_ids(self, space: str, model_id: str) -> list[int]:
        return self.vectors.stale_vector_ids(space, model_id)

    def changes_since(self, seq: int) -> tuple[int, list[int], list[int]]:
        return self.changes.changes_since(seq)

    def last_change(self) -> int:
        return self.changes.last_change()

    def log_tips(self) -> tuple[int, int]:
        return self.changes.log_tips()

    def fts_search(self, text: str, limit: int = 100) -> list[tuple[int, float]]:
        """BM25 over title, description and tags: ``(pin_id, score)`` best first, score > 0."""
        return self.keywords.search(text, limit)

    # ------------------------------------------------------------ duplicates
    def phashes(self) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
        return self.duplicates.phashes()

    def set_dup_groups(self, groups: Mapping[int, int | None]) -> None:
        self.duplicates.set_dup_groups(groups)

    def dup_groups(self) -> dict[int, list[int]]:
        return self.duplicates.dup_groups()

    # ---------------------------------------------------------------- ingest
    def known_source(self, ref: str) -> str | None:
        return self.runs.known_source(ref)

    def known_sources(self) -> set[str]:
        return self.runs.known_sources()

    def source_pins(self) -> dict[str, int | None]:
        return self.runs.source_pins()

    def start_run(self, run_id: str, source: str) -> None:
        self.runs.start_run(run_id, source)

    def finish_run(self, run_id: str, status: str, counts: dict[str, int]) -> None:
        self.runs.finish_run(run_id, status, counts)

    def running_runs(self) -> list[tuple[str, str, str]]:
        return self.runs.running_runs()

    def interrupt_runs(self, run_ids: Sequence[str], *, forget: Sequence[str] = ()) -> None:
        self.runs.interrupt_runs(run_ids, forget=forget)

    def add_quarantine(self, run_id: str, entries: Sequence[QuarantineEntry]) -> None:
        self.runs.add_quarantine(run_id, entries)

    def quarantine_report(self, run_id: str | None = None) -> list[QuarantineEntry]:
        return self.runs.quarantine_report(run_id)

    # ------------------------------------------------------------- artefacts
    def get_kv(self, key: str, default: Any = None) -> Any:
        return self.artefacts.get_kv(key, default)

    def set_kv(self, key: str, value: Any) -> None:
        self.artefacts.set_kv(key, value)

    def delete_kv(self, key: str) -> None:
        self.artefacts.delete_kv(key)

    def put_artefact(
        self, name: str, data: bytes, provenance: Mapping[str, Any] | None = None
    ) -> ArtefactInfo:
        return self.artefact_files.put_artefact(name, data, provenance)

    def get_artefact(self, digest: str) -> bytes:
        return self.artefact_files.get_artefact(digest)

    def latest_artefact(self, name: str) -> ArtefactInfo | None:
        return self.artefact_files.latest_artefact(name)

    def list_artefacts(self, name: str | None = None) -> list[ArtefactInfo]:
        return self.artefact_files.list_artefacts(name)

    # --------------------------------------------------------- tokens, audit
    def create_token(self, name: str, role: str) -> tuple[TokenInfo, str]:
        return self.tokens.create_token(name, role)

    def verify_token(self, secret: str) -> TokenInfo | None:
        return self.tokens.verify_token(secret)

    def list_tokens(self) -> list[TokenInfo]:
        return self.tokens.list_tokens()

    def revoke_token(self, token_id: int, *, allow_last_admin: bool = False) -> None:
        self.tokens.revoke_token(token_id, allow_last_admin=allow_last_admin)

    def audit(self, token_id: int | None, role: str, action: str, target: str) -> None:
        self.audit_log.audit(token_id, role, action, target)

    def audit_entries(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.audit_log.audit_entries(limit)

    # ---------------------------------------------------- users, boards, saves
    def create_user(self, handle: str, name: str = "") -> dict[str, Any]:
        return self.engagement.create_user(handle, name)

    def get_user(self, user_id: int) -> dict[str, Any]:
        return self.engagement.get_user(user_id)

    def list_users(self, offset: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        return self.engagement.list_users(offset, limit)

    def user_ids(self, limit: int) -> list[int]:
        return self.engagement.user_ids(limit)

    def create_board(self, user_id: int, name: str, description: str = "") -> dict[str, Any]:
        return self.engagement.create_board(user_id, name, description)

    def get_board(self, board_id: int) -> dict[str, Any]:
        return self.engagement.get_board(board_id)

    def user_boards(self, user_id: int) -> list[dict[str, Any]]:
        return self.engagement.user_boards(user_id)

    def save_pin(self, board_id: int, pin_id: int) -> bool:
        return self.engagement.save_pin(board_id, pin_id)

    def board_edges(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        return self.engagement.board_edges()

    # --------------------------------------------------------- personal data
    def user_export(self, user_id: int) -> dict[str, Any]:
        return self.personal.user_export(user_id)

    def erase_user(self, user_id: int, *, actor: tuple[int | None, str]) -> dict[str, Any]:
        return self.personal.erase_user(user_id, actor=actor)

    # ---------------------------------------------------------------- events
    def existing_ids(self, table: str, ids: Iterable[int]) -> set[int]:
        return self.events.existing_ids(table, ids)

    def add_events(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.events.add_events(rows)

    def events_since(self, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        return self.events.events_since(after_id, limit)

    def event_columns(self, after_id: int = 0, limit: int | None = None) -> list[tuple[Any, ...]]:
        return self.events.event_columns(after_id, limit)

    def last_event_id(self) -> int:
        return self.events.last_event_id()

    def count_events(
        self, where: EventSelection | None = None, window: EventTimes | None = None
    ) -> int:
        return self.events.count_events(where, window)

    def find_events(
        self, where: EventSelection, window: EventTimes, limit: int = 100
    ) -> list[dict[str, Any]]:
        return self.events.find_events(where, window, limit)

    def delete_events(
        self,
        where: EventSelection,
        window: EventTimes,
        *,
        actor: tuple[int | None, str],
        note: dict[str, Any] | None = None,
        keep: Callable[[Iterator[dict[str, Any]]], None] | None = None,
    ) -> int:
        return self.events.delete_events(where, window, actor=actor, note=note, keep=keep)

    def events_generation(self) -> str | None:
        return self.events.events_generation()

    def event_stats(self, window: EventTimes) -> dict[str, Any]:
        return self.events.event_stats(window)


if TYPE_CHECKING:
    # mypy proves the facade, and each repository, provide the ports they stand for.
    from tastegraph.store import ports as _p
    from tastegraph.store.postgresql import TsvectorKeywordIndex
    from tastegraph.store.sqlite import Fts5KeywordIndex

    _store: type[_p.Store] = SQLStore
    _pins: type[_p.PinReader] = PinRepository
    _pin_writer: type[_p.PinWriter] = PinRepository
    _vectors: type[_p.Vectors] = VectorRepository
    _changes: type[_p.ChangeLog] = ChangeLogRepository
    _dups: type[_p.Duplicates] = DuplicateRepository
    _runs: type[_p.IngestRuns] = IngestRunRepository
    _kv: type[_p.Artefacts] = ArtefactRepository
    _files: type[_p.ArtefactFiles] = ArtefactFileRepository
    _tokens: type[_p.Tokens] = TokenRepository
    _audit: type[_p.AuditLog] = AuditRepository
    _people: type[_p.Engagement] = EngagementRepository
    _events: type[_p.EventLog] = EventRepository
    _fts: type[_p.KeywordIndex] = Fts5KeywordIndex
    _tsv: type[_p.KeywordIndex] = TsvectorKeywordIndex
    _sqlite: type[Dialect] = SQLiteDialect
    _postgresql: type[Dialect] = PostgreSQLDialect
