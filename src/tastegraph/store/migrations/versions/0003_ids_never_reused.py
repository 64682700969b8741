"""Ids are never reused: AUTOINCREMENT on every table whose ids leave the process.

Without AUTOINCREMENT SQLite gives the next row ``max(rowid) + 1``, so deleting the newest pin
(user, board, token, event...) hands its id to the next insert, which then inherits the old row's
saves, clicks, links and cached thumbnail. SQLite cannot add AUTOINCREMENT to a table in place,
so each table is rebuilt (the documented create-copy-drop-rename procedure; the store switches
foreign keys off around migrations so the DROP does not cascade into child tables), then its
``sqlite_sequence`` row is raised to the largest id the database has ever referenced, including
ids of rows deleted before this upgrade that other tables (the change log, events, audit lines)
still name.

The DDL is frozen here on purpose: a later change to ``schema.py`` must not change what this
revision does to a database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_ids_never_reused"
down_revision = "0002"

# table -> (CREATE TABLE for the rebuilt table, its columns, its indexes)
_TABLES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "pins": (
        """CREATE TABLE {name} (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    content_hash VARCHAR(64) NOT NULL,
    phash VARCHAR(16) DEFAULT '' NOT NULL,
    title TEXT DEFAULT '' NOT NULL,
    description TEXT DEFAULT '' NOT NULL,
    link TEXT DEFAULT '' NOT NULL,
    board TEXT DEFAULT '' NOT NULL,
    tags JSON NOT NULL,
    labels JSON NOT NULL,
    attributes JSON NOT NULL,
    source TEXT DEFAULT '' NOT NULL,
    width INTEGER DEFAULT '0' NOT NULL,
    height INTEGER DEFAULT '0' NOT NULL,
    format VARCHAR(16) DEFAULT '' NOT NULL,
    dup_group INTEGER,
    thumbnail BLOB,
    created_at VARCHAR(32) NOT NULL,
    updated_at VARCHAR(32) NOT NULL,
    UNIQUE (content_hash)
)""",
        "id, content_hash, phash, title, description, link, board, tags, labels, attributes, "
        "source, width, height, format, dup_group, thumbnail, created_at, updated_at",
        (
            "CREATE INDEX ix_pins_board ON pins (board)",
            "CREATE INDEX ix_pins_phash ON pins (phash)",
        ),
    ),
    "changes": (
        """CREATE TABLE {name} (
    seq INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    pin_id INTEGER NOT NULL,
    op VARCHAR(8) NOT NULL
)""",
        "seq, pin_id, op",
        (),
    ),
    "quarantine": (
        """CREATE TABLE {name} (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    run_id VARCHAR(32) NOT NULL,
    source TEXT NOT NULL,
    reason VARCHAR(32) NOT NULL,
    message TEXT NOT NULL,
    created_at VARCHAR(32) NOT NULL
)""",
        "id, run_id, source, reason, message, created_at",
        ("CREATE INDEX ix_quarantine_run_id ON quarantine (run_id)",),
    ),
    "tokens": (
        """CREATE TABLE {name} (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    role VARCHAR(16) NOT NULL,
    token_hash VARCHAR(64) NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    revoked_at VARCHAR(32),
    UNIQUE (token_hash)
)""",
        "id, name, role, token_hash, created_at, revoked_at",
        (),
    ),
    "audit_log": (
        """CREATE TABLE {name} (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at VARCHAR(32) NOT NULL,
    token_id INTEGER,
    role VARCHAR(16) NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL
)""",
        "id, at, token_id, role, action, target",
        (),
    ),
    "users": (
        """CREATE TABLE {name} (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    handle VARCHAR(64) NOT NULL,
    name TEXT DEFAULT '' NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    UNIQUE (handle)
)""",
        "id, handle, name, created_at",
        (),
    ),
    "boards": (
        """CREATE TABLE {name} (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    description TEXT DEFAULT '' NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    CONSTRAINT uq_board_user_name UNIQUE (user_id, name),
    FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
)""",
        "id, user_id, name, description, created_at",
        (),
    ),
    "events": (
        """CREATE TABLE {name} (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "key" VARCHAR(64) NOT NULL,
    user_id INTEGER NOT NULL,
    pin_id INTEGER NOT NULL,
    kind VARCHAR(16) NOT NULL,
    ts FLOAT NOT NULL,
    dwell_ms FLOAT DEFAULT '0' NOT NULL,
    surface VARCHAR(32) DEFAULT '' NOT NULL,
    position INTEGER,
    request_id VARCHAR(64) DEFAULT '' NOT NULL,
    UNIQUE ("key")
)""",
        'id, "key", user_id, pin_id, kind, ts, dwell_ms, surface, position, request_id',
        (
            "CREATE INDEX ix_events_user_ts ON events (user_id, ts)",
            "CREATE INDEX ix_events_pin ON events (pin_id)",
        ),
    ),
}

# Every place an id of the table may still be named after its row is gone (table, column).
_REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "pins": (
        ("pins", "id"),
        ("changes", "pin_id"),
        ("vectors", "pin_id"),
        ("sources", "pin_id"),
        ("board_pins", "pin_id"),
        ("events", "pin_id"),
    ),
    "changes": (("changes", "seq"),),
    "quarantine": (("quarantine", "id"),),
    "tokens": (("tokens", "id"), ("audit_log", "token_id")),
    "audit_log": (("audit_log", "id"),),
    "users": (("users", "id"), ("boards", "user_id"), ("events", "user_id")),
    "boards": (("boards", "id"), ("board_pins", "board_id")),
    "events": (("events", "id"),),
}

# A referenced value this large is not an id the store ever handed out (every id it hands out
# comes from a sequence); seeding with it would exhaust the sequence and refuse every insert.
_SANE_ID = 2**53


def _has_autoincrement(bind: sa.Connection, name: str) -> bool:
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).scalar_one_or_none()
    return sql is not None and "AUTOINCREMENT" in sql.upper()


def _rebuild(bind: sa.Connection, name: str) -> None:
    ddl, cols, indexes = _TABLES[name]
    tmp = f"_new_{name}"
    bind.exec_driver_sql(ddl.format(name=tmp))
    bind.exec_driver_sql(f"INSERT INTO {tmp} ({cols}) SELECT {cols} FROM {name}")
    bind.exec_driver_sql(f"DROP TABLE {name}")
    bind.exec_driver_sql(f"ALTER TABLE {tmp} RENAME TO {name}")
    for stmt in indexes:
        bind.exec_driver_sql(stmt)


def _max_ever(bind: sa.Connection, name: str) -> int:
    best = 0
    for table, col in _REFERENCES[name]:
        v = bind.exec_driver_sql(
            f'SELECT MAX("{col}") FROM {table} WHERE typeof("{col}") = ? AND "{col}" < ?',
            ("integer", _SANE_ID),
        ).scalar_one_or_none()
        best = max(best, int(v or 0))
    return best


def _seed_sequence(bind: sa.Connection, name: str, value: int) -> None:
    # sqlite_sequence has no key on ``name``: update the row if there is one, else add it.
    n = bind.exec_driver_sql(
        "UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", (value, name)
    ).rowcount
    if not n and value > 0:
        bind.exec_driver_sql("INSERT INTO sqlite_sequence(name, seq) VALUES (?, ?)", (name, value))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return  # other databases' sequences never hand an id out twice
    # Parents before children is not needed (foreign keys are off while migrating); the check
    # below proves the copy kept every reference intact before the transaction commits. Orphans
    # an old database already had are not this revision's to judge (refusing them would lock the
    # owner out of their data), so only new ones fail it.
    before = set(bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall())
    for name in _TABLES:
        if not _has_autoincrement(bind, name):
            _rebuild(bind, name)
    for name in _TABLES:
        _seed_sequence(bind, name, _max_ever(bind, name))
    broken = set(bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()) - before
    if broken:
        raise RuntimeError(f"foreign keys broken by the id migration: {sorted(broken)[:5]}")


def downgrade() -> None:
    # AUTOINCREMENT tables read and write exactly like the old ones: nothing to undo.
    pass
