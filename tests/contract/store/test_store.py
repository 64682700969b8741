"""Store contract: every backend passes these (SQLite, and PostgreSQL on a real server).

The ``store`` fixture (``conftest.py``) is typed to the ports (``store/ports.py``), never to a
class: a backend runs this file unchanged by adding one entry to ``BACKENDS`` there. Tests are
grouped by the repository they exercise.
"""

from __future__ import annotations

import inspect
import threading
from pathlib import Path

import numpy as np
import pytest
from typing_extensions import get_protocol_members, is_protocol

from tastegraph.domain import QuarantineEntry
from tastegraph.engagement.events import EventFilter, TimeWindow
from tastegraph.errors import Conflict, InvalidInput, NotFound
from tastegraph.store import NewPin, open_store, ports
from tastegraph.store.ports import (
    Artefacts,
    AuditLog,
    ChangeLog,
    Duplicates,
    Engagement,
    EventLog,
    IngestRuns,
    KeywordSearch,
    PinReader,
    Store,
    Tokens,
    Vectors,
)
from tastegraph.store.postgresql import TsvectorKeywordIndex, ts_query
from tastegraph.store.sql import SQLStore
from tastegraph.store.sqlite import Fts5KeywordIndex, fts_query


def pin(h: str, **kw: object) -> NewPin:
    vec = np.arange(4, dtype=np.float32) + len(h)
    return NewPin(
        content_hash=(h * 64)[:64], source=f"{h}.jpg", vectors={"image": ("m@1", vec)}, **kw
    )  # type: ignore[arg-type]


# ------------------------------------------------------------------- the ports themselves
# The repository ports a store offers (Store combines exactly these); KeywordIndex is the port
# a backend's keyword index offers the pin repository, checked on its own below.
PORTS = [p for p in Store.__bases__ if is_protocol(p) and p.__module__ == ports.__name__]


def test_every_public_method_of_the_store_belongs_to_a_port() -> None:
    in_ports = set().union(*(get_protocol_members(p) for p in PORTS))
    public = {n for n, v in vars(SQLStore).items() if callable(v) and not n.startswith("_")}
    assert public - in_ports == set(), "add these to a protocol in store/ports.py"
    assert get_protocol_members(Store) == in_ports
    declared = {
        p for p in vars(ports).values() if is_protocol(p) and p.__module__ == ports.__name__
    }
    # besides: the combination, the backend's keyword index, its notice connection, and what
    # event queries are given
    assert declared - set(PORTS) == {
        Store,
        ports.KeywordIndex,
        ports.NoticeConnection,  # what store.notices() opens
        ports.EventSelection,
        ports.EventTimes,
    }


@pytest.mark.parametrize("index", [Fts5KeywordIndex, TsvectorKeywordIndex])
def test_keyword_index_matches_its_port(index: type) -> None:
    for name in get_protocol_members(ports.KeywordIndex):
        want = inspect.signature(getattr(ports.KeywordIndex, name))
        assert inspect.signature(getattr(index, name)) == want, name


def test_the_store_signatures_match_the_ports() -> None:
    for port in PORTS:
        for name in get_protocol_members(port):
            want = getattr(port, name, None)  # None: a data member (``url``)
            if callable(want):
                got = inspect.signature(getattr(SQLStore, name))
                assert got == inspect.signature(want), f"{port.__name__}.{name}"


def test_unknown_scheme_lists_known(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as e:
        open_store("mysql://x")
    assert "sqlite" in e.value.hint


def test_reopen_keeps_data(backend_url: str) -> None:
    s = open_store(backend_url)
    s.add_pins([pin("z")])
    s.close()
    s = open_store(backend_url)
    assert s.count_pins() == 1
    s.close()


# ----------------------------------------------------------------------------- pins
class TestPins:
    def test_add_is_idempotent_by_content_hash(self, store: Store) -> None:
        assert store.add_pins([pin("a", title="Red dress")]) == [(1, True)]
        assert store.add_pins([pin("a", title="other")]) == [(1, False)]
        assert store.count_pins() == 1
        assert store.get_pin(1).title == "Red dress"
        # the second source ref is recorded, so a resumed ingest skips it too
        assert store.known_sources() == {"a.jpg"}
        assert store.find_by_hash("a" * 64) == 1 and store.find_by_hash("q" * 64) is None

    def test_same_hash_twice_in_one_batch(self, store: Store) -> None:
        assert store.add_pins([pin("a"), pin("a")]) == [(1, True), (1, False)]

    def test_roundtrip_fields_and_vectors(self, store: Store) -> None:
        store.add_pins(
            [pin("b", tags=["x", "y"], labels=[("dog", 0.9)], attributes={"price": 3, "c": "red"})]
        )
        p = store.get_pin(1)
        assert p.tags == ["x", "y"] and p.labels == [("dog", 0.9)]
        assert p.attributes == {"price": 3, "c": "red"}
        ids, mat, models = store.get_vectors("image")
        assert ids.tolist() == [1] and models == ["m@1"]
        np.testing.assert_array_equal(mat[0], np.arange(4, dtype=np.float32) + 1)

    def test_unknown_ids_raise_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound):
            store.get_pin(42)
        with pytest.raises(NotFound):
            store.delete_pin(42)
        with pytest.raises(NotFound):
            store.update_pin(42, {"title": "x"})
        with pytest.raises(NotFound):
            store.get_thumbnail(42)
        assert store.get_pins([42]) == {}
        assert store.update_pins([(42, {"title": "x"}, None)], skip_missing=True) == []

    def test_update_rejects_unknown_fields(self, store: Store) -> None:
        store.add_pins([pin("c")])
        with pytest.raises(InvalidInput):
            store.update_pin(1, {"content_hash": "evil"})

    def test_update_replaces_words_and_vectors(self, store: Store) -> None:
        store.add_pins([pin("c", title="Old coat")])
        new = np.full(4, 7.0, np.float32)
        assert store.update_pin(1, {"title": "New hat"}, {"image": ("m@2", new)}).title == "New hat"
        assert store.fts_search("coat") == [] and [i for i, _ in store.fts_search("hat")] == [1]
        _, mat, models = store.get_vectors("image", [1])
        assert models == ["m@2"] and mat[0].tolist() == new.tolist()

    def test_list_and_thumbnail(self, store: Store) -> None:
        store.add_pins([pin("a", board="x", thumbnail=b"jpg"), pin("b", board="y")])
        assert [p.id for p in store.list_pins()] == [1, 2]
        assert [p.id for p in store.list_pins(board="y")] == [2]
        assert [p.id for p in store.list_pins(offset=1, limit=1)] == [2]
        assert store.get_thumbnail(1) == b"jpg"
        with pytest.raises(NotFound):
            store.get_thumbnail(2)

    def test_records_and_meta_are_plain_rows(self, store: Store) -> None:
        store.add_pins([pin("a", title="T", tags=["t"], labels=[("dog", 0.5)]), pin("b")])
        [rec] = store.pin_records([1, 1, 99])
        as_dict = dict(zip(ports.PIN_RECORD_FIELDS, rec, strict=True))
        want = store.get_pin(1).to_dict()
        assert {k: as_dict[k] for k in ("id", "title", "tags", "attributes")} == {
            k: want[k] for k in ("id", "title", "tags", "attributes")
        }
        assert as_dict["labels"] == [["dog", 0.5]]
        assert sorted(m[0] for m in store.pin_meta()) == [1, 2]
        [(pid, title, board, labels, created, dup)] = store.pin_meta([1])
        assert (pid, title, board, labels, dup) == (1, "T", "", [["dog", 0.5]], None)
        assert created == store.get_pin(1).created_at

    def test_filters(self, store: Store) -> None:
        reader: PinReader = store
        store.add_pins(
            [
                pin("a", board="shoes", tags=["red"], attributes={"size": "42"}),
                pin("b", board="hats", tags=["blue"], attributes={"size": 42}),
            ]
        )
        assert reader.filter_ids() is None
        assert reader.filter_ids(board="shoes").tolist() == [1]  # type: ignore[union-attr]
        assert reader.filter_ids(tag="blue").tolist() == [2]  # type: ignore[union-attr]
        both = reader.filter_ids(attributes={"size": "42"})
        assert both is not None and sorted(both.tolist()) == [1, 2]
        assert reader.filter_ids(board="none").tolist() == []  # type: ignore[union-attr]
        with pytest.raises(InvalidInput):
            reader.filter_ids(attributes={"bad key')": "x"})

    def test_concurrent_writers_do_not_lose_rows(self, store: Store) -> None:
        def work(k: int) -> None:
            for i in range(20):
                store.add_pins([pin(f"{k:02d}{i:02d}")])

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.count_pins() == 80


# --------------------------------------------------------------- vectors, change log
class TestVectorsAndChanges:
    def test_change_log_collapses_to_last_op(self, store: Store) -> None:
        log: ChangeLog = store
        store.add_pins([pin("a"), pin("b")])
        seq, ups, dels = log.changes_since(0)
        assert (sorted(ups), dels) == ([1, 2], [])
        store.delete_pin(1)
        last, ups, dels = log.changes_since(seq)
        assert ups == [] and dels == [1] and last > seq
        assert log.changes_since(last) == (last, [], [])
        assert log.last_change() == last
        assert store.get_vectors("image")[0].tolist() == [2]

    def test_stale_vectors(self, store: Store) -> None:
        vectors: Vectors = store
        store.add_pins([pin("a"), pin("b")])
        store.update_pin(2, {}, {"image": ("m@2", np.ones(4, np.float32))})
        assert vectors.stale_vector_ids("image", "m@2") == [1]
        assert vectors.stale_vector_ids("text", "m@2") == []
        assert vectors.get_vectors("text")[0].tolist() == []


# ------------------------------------------------------------------- keyword search
class TestKeywordSearch:
    def test_finds_title_and_user_tags_with_prefix(self, store: Store) -> None:
        search: KeywordSearch = store
        store.add_pins(
            [
                pin("a", title="Summer dress", tags=["linen"]),
                pin("b", title="Winter boots", tags=["cowboy boot"], labels=[("cowboy boot", 0.8)]),
            ]
        )
        assert [p for p, _ in search.fts_search("dress")] == [1]
        assert [p for p, _ in search.fts_search("linen")] == [1]
        assert [p for p, _ in search.fts_search("boo")] == [2]  # prefix on the last word
        # a model label is a tag for filters, but BM25 covers only words people wrote
        assert search.fts_search("cowboy") == []
        assert store.filter_ids(tag="cowboy boot").tolist() == [2]  # type: ignore[union-attr]
        assert search.fts_search('") OR *') == []  # query syntax in user input is inert
        assert all(score > 0 for _, score in search.fts_search("dress boots"))

    def test_deleted_pins_leave_the_index(self, store: Store) -> None:
        store.add_pins([pin("a", title="Summer dress")])
        store.delete_pin(1)
        assert store.fts_search("dress") == []


def test_fts_query_quotes_words() -> None:
    assert fts_query('red "dress" AND') == '"red" OR "dress" OR "and"*'
    assert fts_query("  ") == ""
    assert ts_query("red 'dress' & !x:*") == "'red' | 'dress' | 'x':*"
    assert ts_query("  ") == ""


# ----------------------------------------------------------------------- duplicates
class TestDuplicates:
    def test_groups(self, store: Store) -> None:
        dups: Duplicates = store
        store.add_pins([pin("a", phash="00ff"), pin("b", phash="00fe"), pin("c")])
        ids, hashes = dups.phashes()
        assert dict(zip(ids.tolist(), hashes.tolist(), strict=True)) == {1: 0xFF, 2: 0xFE}
        dups.set_dup_groups({1: 1, 2: 1})
        assert dups.dup_groups() == {1: [1, 2]}
        dups.set_dup_groups({2: None})
        assert dups.dup_groups() == {1: [1]}

    def test_new_dup_groups_are_in_the_change_log(self, store: Store) -> None:
        # Serving processes keep copies of pin rows current from the change log.
        store.add_pins([pin("a", phash="00ff"), pin("b", phash="00fe")])
        seq = store.last_change()
        store.set_dup_groups({1: 1, 2: 1, 99: 1})  # 99 does not exist: not logged
        last, ups, dels = store.changes_since(seq)
        assert last > seq and sorted(ups) == [1, 2] and dels == []


# ---------------------------------------------------------------------- ingest runs
class TestIngestRuns:
    def test_quarantine_and_runs(self, store: Store) -> None:
        runs: IngestRuns = store
        runs.start_run("r1", "folder")
        runs.add_quarantine("r1", [QuarantineEntry("bad.jpg", "truncated", "cut short")])
        runs.finish_run("r1", "partial", {"added": 0})
        rows = runs.quarantine_report("r1")
        assert [(r.source, r.reason) for r in rows] == [("bad.jpg", "truncated")]
        assert runs.quarantine_report("other") == [] and len(runs.quarantine_report()) == 1

    def test_running_runs_can_be_interrupted(self, store: Store) -> None:
        runs: IngestRuns = store
        runs.start_run("r1", "a")
        runs.start_run("r2", "b")
        runs.finish_run("r2", "done", {})
        store.set_kv("owner:r1", {"pid": 1})
        assert [r[:2] for r in runs.running_runs()] == [("r1", "a")]
        runs.interrupt_runs(["r1", "r2"], forget=["owner:r1"])
        assert runs.running_runs() == [] and store.get_kv("owner:r1") is None

    def test_sources(self, store: Store) -> None:
        store.add_pins([pin("a")])
        assert store.known_source("a.jpg") == "a" * 64 and store.known_source("x") is None
        assert store.source_pins() == {"a.jpg": 1}
        store.delete_pin(1)
        assert store.source_pins() == {}


# ------------------------------------------------------------------------ artefacts
def test_kv(store: Store) -> None:
    kv: Artefacts = store
    kv.set_kv("k", {"a": 1})
    kv.set_kv("k", {"a": 2})
    assert kv.get_kv("k") == {"a": 2}
    assert kv.get_kv("missing", 5) == 5
    kv.delete_kv("k")
    assert kv.get_kv("k") is None


# ------------------------------------------------------------------ tokens and audit
class TestTokensAndAudit:
    def test_tokens_hashed_and_revocable(self, store: Store) -> None:
        tokens: Tokens = store
        info, secret = tokens.create_token("ci", "editor")
        assert tokens.verify_token(secret).role == "editor"  # type: ignore[union-attr]
        with store.read() as conn:
            stored = conn.exec_driver_sql("SELECT token_hash FROM tokens").scalar_one()
        assert secret not in stored
        tokens.revoke_token(info.id)
        assert tokens.verify_token(secret) is None
        assert [t.revoked_at is not None for t in tokens.list_tokens()] == [True]
        with pytest.raises(Conflict):
            tokens.revoke_token(info.id)
        with pytest.raises(NotFound):
            tokens.revoke_token(99)
        with pytest.raises(InvalidInput):
            tokens.create_token("x", "root")

    def test_last_admin_is_kept(self, store: Store) -> None:
        admin, _ = store.create_token("a", "admin")
        with pytest.raises(Conflict):
            store.revoke_token(admin.id)
        store.revoke_token(admin.id, allow_last_admin=True)

    def test_audit(self, store: Store) -> None:
        log: AuditLog = store
        log.audit(1, "admin", "read", "tokens")
        log.audit(None, "cli", "write", "pins")
        assert [e["target"] for e in log.audit_entries()] == ["pins", "tokens"]
        assert len(log.audit_entries(limit=1)) == 1


# ------------------------------------------------------------------------ engagement
class TestEngagement:
    def test_users_boards_saves(self, store: Store) -> None:
        people: Engagement = store
        store.add_pins([pin("a")])
        ann = people.create_user("ann", "Ann")
        with pytest.raises(Conflict):
            people.create_user("ann")
        with pytest.raises(InvalidInput):
            people.create_user(" ")
        assert people.get_user(ann["id"])["name"] == "Ann"
        assert [u["handle"] for u in people.list_users()] == ["ann"]
        assert people.user_ids(10) == [ann["id"]]
        board = people.create_board(ann["id"], "shoes")
        with pytest.raises(Conflict):
            people.create_board(ann["id"], "shoes")
        assert people.save_pin(board["id"], 1) is True
        assert people.save_pin(board["id"], 1) is False  # already there: ignored
        with pytest.raises(NotFound):
            people.save_pin(board["id"], 99)
        assert people.get_board(board["id"])["pins"] == [1]
        assert [b["name"] for b in people.user_boards(ann["id"])] == ["shoes"]
        boards, pins = people.board_edges()
        assert boards.tolist() == [board["id"]] and pins.tolist() == [1]
        with pytest.raises(NotFound):
            people.get_user(99)
        with pytest.raises(NotFound):
            people.get_board(99)


# ---------------------------------------------------------------------------- events
def _event(key: str, user: int = 1, pin_id: int = 1, kind: str = "click", ts: float = 10.0) -> dict:  # type: ignore[type-arg]
    return {"key": key, "user_id": user, "pin_id": pin_id, "kind": kind, "ts": ts}


class TestEvents:
    def test_idempotent_by_key_and_read_in_order(self, store: Store) -> None:
        log: EventLog = store
        assert [r["key"] for r in log.add_events([_event("a"), _event("b"), _event("a")])] == [
            "a",
            "b",
        ]
        assert log.add_events([_event("b"), _event("c")]) == [_event("c")]
        assert [r["key"] for r in log.events_since()] == ["a", "b", "c"]
        assert [r["key"] for r in log.events_since(1, limit=1)] == ["b"]
        assert log.last_event_id() == 3
        cols = log.event_columns(2)
        assert cols == [(3, 1, 1, "click", 10.0, 0.0, "", None, "")]

    def test_log_tips_follow_both_logs_in_one_read(self, store: Store) -> None:
        tips: ports.LogTips = store
        assert tips.log_tips() == (0, 0)
        store.add_pins([pin("a"), pin("b")])
        store.add_events([_event("a"), _event("b")])
        assert tips.log_tips() == (store.last_change(), store.last_event_id())
        assert tips.log_tips()[1] == 2
        store.delete_pin(1)
        assert tips.log_tips() == (store.last_change(), 2)

    def test_log_tips_see_another_connections_commits(self, backend_url: str) -> None:
        # A serving process checks the tips before every read; another process's writes
        # (here: a second store on the same database) must move them, every time.
        reader, writer = open_store(backend_url), open_store(backend_url)
        try:
            assert reader.log_tips() == (0, 0)
            assert reader.log_tips() == (0, 0)  # unchanged: may be answered without a read
            for i in range(3):
                writer.add_pins([pin(f"p{i}")])
                assert reader.log_tips() == (writer.last_change(), i)
                writer.add_events([_event(f"e{i}")])
                assert reader.log_tips() == (writer.last_change(), i + 1)
            reader.add_events([_event("own")])  # its own writes too
            assert reader.log_tips()[1] == 4
        finally:
            reader.close()
            writer.close()

    def test_existing_ids(self, store: Store) -> None:
        store.add_pins([pin("a")])
        store.create_user("ann")
        assert store.existing_ids("pins", [1, 2, -1, 2**70]) == {1}
        assert store.existing_ids("users", [1]) == {1}

    def test_filtered_count_find_delete(self, store: Store) -> None:
        log: EventLog = store
        window = TimeWindow(min_ts=0.0, max_ts=100.0)
        log.add_events([_event("a", user=1), _event("b", user=2), _event("c", ts=500.0)])
        assert log.count_events() == 3
        assert log.count_events(EventFilter(user_id=2), window) == 1
        assert [r["key"] for r in log.find_events(EventFilter(future=True), window)] == ["c"]
        with pytest.raises(InvalidInput):
            log.count_events(EventFilter(), window)
        assert log.events_generation() is None
        kept: list[str] = []
        n = log.delete_events(
            EventFilter(user_id=2),
            window,
            actor=(None, "cli"),
            keep=lambda rows: kept.extend(r["key"] for r in rows),
        )
        assert n == 1 and kept == ["b"]
        assert log.events_generation() is not None
        assert store.audit_entries()[0]["action"] == "delete_events"
        stats = log.event_stats(window)
        assert (stats["events"], stats["by_kind"], stats["future"]) == (2, {"click": 2}, 1)


# ----------------------------------------------------------------------- layering
def _store_imports() -> dict[str, set[str]]:
    """Module -> the ``tastegraph`` modules it imports (TYPE_CHECKING ones included)."""
    import ast

    root = Path(ports.__file__).parent
    out: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        name = "tastegraph.store" + ("" if path.stem == "__init__" else f".{path.stem}")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        out[name] = {m for m in found if m.startswith("tastegraph")}
    return out


def test_store_imports_only_lower_layers_and_has_no_cycle() -> None:
    graph = _store_imports()
    allowed = ("tastegraph.store", "tastegraph.domain", "tastegraph.errors")
    for mod, deps in graph.items():
        bad = {d for d in deps if not d.startswith(allowed)}
        assert not bad, f"{mod} imports {sorted(bad)}"
    edges = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    edges.pop("tastegraph.store")  # the package's entry point imports its modules, none it
    for deps in edges.values():
        deps.discard("tastegraph.store")
    state: dict[str, int] = {}

    def visit(m: str, chain: list[str]) -> None:
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*chain, m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for d in sorted(edges.get(m, ())):
            visit(d, [*chain, m])
        state[m] = 2

    for m in sorted(edges):
        visit(m, [])


# ------------------------------------------------------------------------- NUL characters
@pytest.mark.parametrize(
    "fields",
    [
        {"title": "a\x00"},
        {"tags": ["\x00"]},
        {"attributes": {"k\x00": 1}},
        {"attributes": {"k": [{"deep": "x\x00"}]}},
    ],
    ids=["text", "json list", "json key", "nested"],
)
def test_nul_is_refused_alike_by_every_backend(store: Store, fields: dict[str, object]) -> None:
    # PostgreSQL's text and JSONB cannot hold NUL and SQLite can: both refuse it, one message.
    pid = store.add_pins([pin("a", title="kept")])[0][0]
    with pytest.raises(InvalidInput, match=r"NUL character") as e:
        store.update_pin(pid, fields)
    assert "remove the NUL" in e.value.hint
    assert store.get_pin(pid).title == "kept"
    with pytest.raises(InvalidInput, match=r"NUL character"):
        store.add_pins([pin("b", **fields)])
    assert store.count_pins() == 1
    with pytest.raises(InvalidInput, match=r"NUL character"):
        store.create_user("nul\x00")
