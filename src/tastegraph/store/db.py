"""One database behind every repository: engines, one-writer transactions, dialect hooks.

Repositories never issue SQL that only one database understands: what differs between
databases (how a connection is set up and a write transaction begins, upserts, JSON array
tests, the keyword index, how migrations run) is asked of the :class:`Dialect`, which a module
per database implements (``store/sqlite.py``, ``store/postgresql.py``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from tastegraph.errors import InvalidInput, SchemaOutdated, StoreUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

    from tastegraph.store.ports import KeywordIndex, NoticeConnection

__all__ = ["CommitCounter", "Database", "Dialect", "json_dumps", "now_iso", "safe_url"]

_VALUES = "text without unpaired surrogates, numbers within 64 bits"


def safe_url(url: str) -> str:
    """``url`` fit to print: any password replaced by ``***``."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


def _reason(e: sa.exc.DBAPIError) -> str:
    """The driver's first line about ``e`` (never the statement or its parameters)."""
    text = str(e.orig).strip() if e.orig is not None else ""
    return text.splitlines()[0] if text else type(e).__name__


def _nul_in(value: Any) -> bool:
    """Whether ``value`` (a parameter: text, or a JSON document of lists and dicts) holds NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_nul_in(k) or _nul_in(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_nul_in(v) for v in value)
    return False


_NUL = "text with a NUL character (\\u0000)"
_NUL_HINT = "remove the NUL characters: no store keeps them (PostgreSQL text cannot hold them)"


def json_dumps(value: Any) -> str:
    """How JSON columns are written on every backend: ``json.dumps``, refusing NUL anywhere
    (PostgreSQL's JSONB cannot hold it; SQLite could, and both must keep the same things)."""
    if _nul_in(value):
        raise InvalidInput(f"{_NUL} in a JSON document", hint=_NUL_HINT)
    return json.dumps(value)


def _refuse_nul(
    _conn: Any, _cursor: Any, _statement: str, parameters: Any, _context: Any, many: bool
) -> None:
    """Refuse a write with NUL in a text parameter (PostgreSQL's text cannot hold it), before
    it reaches either database, so that both stores refuse it alike."""
    for row in parameters if many else [parameters]:
        if isinstance(row, Mapping):
            row = row.values()
        elif not isinstance(row, list | tuple):
            row = (row,)
        for value in row:
            if isinstance(value, str) and "\x00" in value:
                raise InvalidInput(_NUL, hint=_NUL_HINT)


def _alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return cfg


def now_iso() -> str:
    """The time a row is stamped with: UTC, ISO 8601, milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Dialect(Protocol):
    """What one database does its own way; everything else is plain SQLAlchemy Core.

    A new backend is one module implementing this (PostgreSQL's upsert is the same call on
    ``sqlalchemy.dialects.postgresql.insert``), plus one parameter of the contract suite.
    """

    name: str
    # Whether opening a database at an older schema upgrades it (else: SchemaOutdated, naming
    # `tastegraph db upgrade`). An empty database is always brought to the newest schema.
    upgrades_on_open: bool

    def engines(self, url: str) -> tuple[sa.Engine, sa.Engine]:
        """``(reader, writer)`` engines for ``url``, connections set up for this database."""
        ...

    def migrating(self, db: Database) -> AbstractContextManager[None]:
        """Whatever must hold around a schema upgrade (SQLite: foreign keys off)."""
        ...

    def upsert(self, table: sa.Table, keys: Sequence[str], update: Sequence[str]) -> sa.Executable:
        """Insert rows; a row whose ``keys`` exist updates the ``update`` columns instead."""
        ...

    def insert_ignore(self, table: sa.Table) -> sa.Insert:
        """Insert rows; one that breaks a unique key is skipped (RETURNING names the others)."""
        ...

    def lock_log(self, conn: sa.Connection, log: str) -> None:
        """Hold ``log`` (a table tailed by ``id > last seen``) until ``conn``'s transaction ends.

        Taken before appending, so rows commit in id order even with writers in several
        processes: a tailer never sees a row before a smaller id that later commits.
        """
        ...

    def announce(self, conn: sa.Connection, what: str) -> None:
        """Tell other processes, when ``conn``'s transaction commits, that ``what`` changed
        (``"changes"``, ``"events"``: a log append, ``"kv"``: a key watched by catch-up).
        A no-op where the database cannot (SQLite: other processes poll)."""
        ...

    def notices(self, url: str) -> Callable[[], NoticeConnection] | None:
        """How to open a connection that hears :meth:`announce`, or None where there is no
        such thing (then the periodic poll is the only way to hear of changes)."""
        ...

    def json_array_has(self, column: sa.ColumnElement[Any], value: str) -> sa.ColumnElement[bool]:
        """Whether the JSON array in ``column`` holds the string ``value``."""
        ...

    def keyword_index(self, db: Database) -> KeywordIndex:
        """The full-text index over pins' words for this database."""
        ...

    def commit_counter(self, db: Database) -> CommitCounter | None:
        """A call far cheaper than a query whose value changes whenever a transaction commits
        on another connection (this process's writer included), or None where there is none:
        a serving process then reads the log tips only when it moved (``log_tips``)."""
        ...

    def id_high_water(self, conn: sa.Connection, table: str, column: str) -> int:
        """The largest id ``table``'s ``column`` has ever handed out (0 if none): a deleted
        row's id included, since ids are never reused."""
        ...

    def set_id_high_water(self, conn: sa.Connection, table: str, column: str, value: int) -> None:
        """Make the next id ``table`` hands out ``value + 1`` (rows inserted with their own ids
        do not move PostgreSQL's sequences)."""
        ...


class CommitCounter(Protocol):
    def __call__(self) -> int: ...

    def close(self) -> None: ...


class Database:
    """Engines for one URL; :meth:`write` and :meth:`read` hand out transactions.

    Writes are serialised in the process (one lock): SQLite has one writer anyway, and waiting
    on the lock rather than on a database busy timeout makes the wait explicit.
    """

    def __init__(self, url: str, dialect: Dialect) -> None:
        self.url = url
        self.dialect = dialect
        self.write_lock = threading.Lock()
        self.engine, self.writer = dialect.engines(url)
        sa.event.listen(self.writer, "before_cursor_execute", _refuse_nul)
        self._counter: CommitCounter | None = None
        self._counter_made = False

    def commit_counter(self) -> CommitCounter | None:
        """The dialect's :meth:`Dialect.commit_counter` for this database, made once."""
        if not self._counter_made:
            with self.write_lock:
                if not self._counter_made:
                    self._counter = self.dialect.commit_counter(self)
                    self._counter_made = True
        return self._counter

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """One write transaction at a time; commits on success, rolls back on error.

        A value the database cannot hold (PostgreSQL: a number past 64 bits; any: an unpaired
        surrogate; text with NUL, refused here on every backend) is the caller's bad input,
        not a server error.
        """
        try:
            with self.write_lock, self._connect(self.writer) as conn, conn.begin():
                yield conn
        except sa.exc.StatementError as e:
            if isinstance(e.orig, InvalidInput):  # raised while binding a value (json_dumps)
                raise e.orig from None
            if isinstance(e, sa.exc.DataError):
                raise InvalidInput(
                    f"the database refused a value: {_reason(e)}", hint=_VALUES
                ) from None
            if isinstance(e, sa.exc.DBAPIError) and e.connection_invalidated:
                raise self._lost(e) from e
            raise
        except UnicodeEncodeError:
            raise InvalidInput("text with an unpaired surrogate", hint=_VALUES) from None

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        try:
            with self._connect(self.engine) as conn:
                yield conn
        except sa.exc.DBAPIError as e:
            if e.connection_invalidated:
                raise self._lost(e) from e
            raise

    def _connect(self, engine: sa.Engine) -> sa.Connection:
        # The pool checks a connection before handing it out and replaces a dead one; a server
        # that cannot be reached at all is a 503 to retry, not a 500.
        try:
            return engine.connect()
        except sa.exc.OperationalError as e:
            raise StoreUnavailable(
                f"cannot reach the store at {safe_url(self.url)}: {_reason(e)}",
                hint="retry in a moment; if it lasts, check that the database server is up",
            ) from None

    def _lost(self, e: sa.exc.DBAPIError) -> StoreUnavailable:
        """A connection that died mid-request: 503 to retry (the pool has dropped it)."""
        return StoreUnavailable(
            f"lost the connection to the store at {safe_url(self.url)}: {_reason(e)}",
            hint="retry: the next request opens a new connection",
        )

    def upsert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        rows: Sequence[Mapping[str, Any]] | Mapping[str, Any],
        *,
        keys: Sequence[str],
        update: Sequence[str],
    ) -> None:
        """Insert ``rows`` into ``table``, updating ``update`` where ``keys`` already exist."""
        conn.execute(self.dialect.upsert(table, keys, update), rows)

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision (every head: branches apply in any order)."""
        from alembic import command

        cfg = _alembic_config()
        with self.write_lock, self.dialect.migrating(self), self.writer.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")

    def schema_heads(self) -> list[str]:
        """The schema revisions the database is at."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return sorted(MigrationContext.configure(conn).get_current_heads())

    def open_schema(self, *, upgrade: bool = False) -> None:
        """Check the schema on open: migrate an empty database (or, with ``upgrade`` or a
        dialect that ``upgrades_on_open``, an older one); refuse one this code cannot use."""
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(_alembic_config())
        have = set(self.schema_heads())
        want = set(script.get_heads())
        if have == want:
            return
        known = {rev.revision for rev in script.walk_revisions()}
        if have - known:
            raise SchemaOutdated(
                f"the database at {safe_url(self.url)} has schema {sorted(have)}, newer than "
                f"this tastegraph knows (up to {sorted(want)})",
                hint="install the release that last wrote this database, or a newer one",
            )
        if have and not (upgrade or self.dialect.upgrades_on_open):
            raise SchemaOutdated(
                f"the database at {safe_url(self.url)} has schema {sorted(have)}, older than "
                f"this tastegraph's {sorted(want)}",
                hint="run `tastegraph db upgrade` (once, servers stopped, after a backup)",
            )
        self.migrate()

    def close(self) -> None:
        if self._counter is not None:
            self._counter.close()
            self._counter = None
        self._counter_made = False
        self.engine.dispose()
        self.writer.dispose()
