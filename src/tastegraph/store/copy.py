"""Copy a whole catalog from one store to another (``tastegraph db copy SRC DST``).

The destination is brought to the newest schema and must hold nothing. Every table of
``schema.py`` is then copied in id order, in batches, with its ids, inside ONE destination
transaction: a copy that is killed or fails commits nothing, so the destination stays empty
and a rerun accepts it. Before that transaction commits, every table's row count and a
checksum over its rows are compared with the source's; the id sequences are set to the
source's high-water marks (ids are never reused, a deleted row's id included). The keyword
index is not copied but rebuilt from the pins, in the destination's own form (FTS5 or
``tsvector``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tastegraph.errors import Conflict, InvalidInput, TastegraphError
from tastegraph.store import schema as t
from tastegraph.store.db import safe_url
from tastegraph.store.keyword import keyword_doc
from tastegraph.store.sql import SQLStore

__all__ = ["CopyReport", "TableCopy", "copy_store", "table_checksum"]

# (table, rows copied so far, rows in all) after each batch
Progress = Callable[[str, int, int], None]

_MASK = (1 << 256) - 1


@dataclass
class TableCopy:
    name: str
    rows: int
    checksum: str
    high_water: int | None = None  # the id sequence's mark, for tables that have one


@dataclass
class CopyReport:
    source: str  # URLs without their passwords
    destination: str
    tables: list[TableCopy] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(tc.rows for tc in self.tables)


def _norm(value: Any, json_column: bool) -> bytes:
    """One value as bytes that are the same whichever database it was read from."""
    if json_column:
        return b"j" + json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    if value is None:
        return b"n"
    if isinstance(value, bytes | bytearray | memoryview):
        return b"b" + bytes(value)
    if isinstance(value, float):
        return b"f" + repr(value).encode()
    if isinstance(value, int):
        return b"i" + str(value).encode()
    return b"s" + str(value).encode("utf-8", "surrogatepass")


class _Checksum:
    """Order-free checksum of a table's rows: the sum of each row's SHA-256 (mod 2**256), so
    two databases that sort text keys differently still agree."""

    def __init__(self, table: sa.Table) -> None:
        self._json = [isinstance(c.type, sa.JSON) for c in table.columns]
        self.total = 0

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        for row in rows:
            h = hashlib.sha256()
            for value, is_json in zip(row, self._json, strict=True):
                b = _norm(value, is_json)
                h.update(len(b).to_bytes(8, "little"))
                h.update(b)
            self.total = (self.total + int.from_bytes(h.digest(), "big")) & _MASK

    def hexdigest(self) -> str:
        return f"{self.total:064x}"


def _batches(conn: sa.Connection, table: sa.Table, size: int) -> Iterator[Sequence[sa.Row[Any]]]:
    query = sa.select(*table.columns).order_by(*table.primary_key.columns)
    result = conn.execution_options(yield_per=size).execute(query)
    yield from result.partitions(size)


def table_checksum(conn: sa.Connection, table: sa.Table, batch: int = 2000) -> tuple[int, str]:
    """``(rows, checksum)`` of ``table`` as ``conn`` sees it."""
    ck = _Checksum(table)
    n = 0
    for rows in _batches(conn, table, batch):
        ck.add(rows)
        n += len(rows)
    return n, ck.hexdigest()


def _counts(conn: sa.Connection) -> dict[str, int]:
    return {
        tb.name: int(conn.execute(sa.select(sa.func.count()).select_from(tb)).scalar_one())
        for tb in t.metadata.sorted_tables
    }


def _same(a: str, b: str) -> bool:
    try:
        return bool(sa.make_url(a) == sa.make_url(b))
    except (sa.exc.ArgumentError, ValueError):
        return a == b  # a bad URL is said by opening it


def _check_source(url: str) -> None:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            # Opening it would create an empty database and copy nothing.
            raise InvalidInput(
                f"no SQLite database at {path}",
                hint="name an existing store file: sqlite:///DATA_DIR/tastegraph.db",
            )


def copy_store(
    src_url: str, dst_url: str, *, batch: int = 2000, progress: Progress | None = None
) -> CopyReport:
    """Copy everything in ``src_url`` into the empty store at ``dst_url``; see the module."""
    if batch < 1:
        raise InvalidInput(f"batch size must be at least 1, not {batch}")
    if _same(src_url, dst_url):
        raise InvalidInput(
            f"source and destination are the same store ({safe_url(src_url)})",
            hint="name two different databases",
        )
    _check_source(src_url)
    start = time.perf_counter()
    src = SQLStore(src_url)
    try:
        dst = SQLStore(dst_url, upgrade=True)
        try:
            report = _copy(src, dst, batch, progress or (lambda *_: None))
        finally:
            dst.close()
    finally:
        src.close()
    report.seconds = time.perf_counter() - start
    return report


def _copy(src: SQLStore, dst: SQLStore, batch: int, progress: Progress) -> CopyReport:
    report = CopyReport(safe_url(src.url), safe_url(dst.url))
    with _snapshot(src) as sconn, dst.write() as dconn:
        # Appending to both logs: hold them as any writer would (no other writer interleaves).
        dst.db.dialect.lock_log(dconn, "changes")
        dst.db.dialect.lock_log(dconn, "events")
        held = {k: v for k, v in _counts(dconn).items() if v}
        if held:
            listed = ", ".join(f"{k}: {v}" for k, v in held.items())
            raise Conflict(
                f"the destination {safe_url(dst.url)} is not empty ({listed})",
                hint="copy into a new, empty database (e.g. createdb NAME, or a new file)",
            )
        totals = _counts(sconn)
        for table in t.metadata.sorted_tables:
            report.tables.append(
                _copy_table(src, dst, sconn, dconn, table, totals[table.name], batch, progress)
            )
        _verify(dconn, report)
    return report


@contextmanager
def _snapshot(store: SQLStore) -> Iterator[sa.Connection]:
    """A read transaction that sees one state of the source throughout (SQLite's read
    transactions already do; PostgreSQL's default READ COMMITTED would not)."""
    with store.read() as conn:
        if store.db.dialect.name == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield conn


def _copy_table(
    src: SQLStore,
    dst: SQLStore,
    sconn: sa.Connection,
    dconn: sa.Connection,
    table: sa.Table,
    total: int,
    batch: int,
    progress: Progress,
) -> TableCopy:
    ck = _Checksum(table)
    done = 0
    progress(table.name, 0, total)
    names = [c.name for c in table.columns]
    for rows in _batches(sconn, table, batch):
        ck.add(rows)
        dicts = [dict(zip(names, r, strict=True)) for r in rows]
        try:
            with dconn.begin_nested():
                dconn.execute(table.insert(), dicts)
                if table is t.pins:
                    dst.keywords.add(dconn, [_doc(d) for d in dicts])
        except (sa.exc.DBAPIError, TastegraphError, UnicodeEncodeError) as e:
            reason = getattr(e, "orig", None) or e
            first = str(reason).strip().splitlines()[0] if str(reason).strip() else type(e)
            raise InvalidInput(
                f"the destination refused a row of {table.name} between "
                f"{_key(table, rows[0])} and {_key(table, rows[-1])}: {first}",
                hint="fix those rows in the source (nothing was copied)",
            ) from None
        done += len(rows)
        progress(table.name, done, total)
    high = None
    col = table.autoincrement_column
    if col is not None:
        high = max(src.db.dialect.id_high_water(sconn, table.name, col.name), _max_id(dconn, col))
        dst.db.dialect.set_id_high_water(dconn, table.name, col.name, high)
    return TableCopy(table.name, done, ck.hexdigest(), high)


def _key(table: sa.Table, row: sa.Row[Any]) -> str:
    m = row._mapping
    return "(" + ", ".join(f"{c.name}={m[c.name]!r}" for c in table.primary_key.columns) + ")"


def _doc(row: Mapping[str, Any]) -> Any:
    return keyword_doc(row["id"], row["title"], row["description"], row["tags"], row["labels"])


def _max_id(conn: sa.Connection, col: sa.Column[Any]) -> int:
    return int(conn.execute(sa.select(sa.func.max(col))).scalar_one_or_none() or 0)


def _verify(dconn: sa.Connection, report: CopyReport) -> None:
    """Read every table back in the copy's own transaction; a difference rolls it all back."""
    for tc in report.tables:
        rows, checksum = table_checksum(dconn, t.metadata.tables[tc.name])
        if (rows, checksum) != (tc.rows, tc.checksum):
            raise TastegraphError(
                f"verification failed for {tc.name}: the source has {tc.rows} rows "
                f"(checksum {tc.checksum[:12]}), the destination {rows} ({checksum[:12]})",
                hint="nothing was committed; report this with both database versions",
            )
