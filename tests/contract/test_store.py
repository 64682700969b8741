"""Store contract: every backend passes these (SQLite today)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from tastegraph.domain import QuarantineEntry
from tastegraph.errors import Conflict, InvalidInput, NotFound
from tastegraph.store import NewPin, open_store
from tastegraph.store.sql import SQLStore, fts_query


@pytest.fixture(params=["sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SQLStore:
    return open_store(f"sqlite:///{tmp_path / 'x.db'}")


def pin(h: str, **kw: object) -> NewPin:
    vec = np.arange(4, dtype=np.float32) + len(h)
    return NewPin(content_hash=h * 64, source=f"{h}.jpg", vectors={"image": ("m@1", vec)}, **kw)  # type: ignore[arg-type]


def test_unknown_scheme_lists_known(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as e:
        open_store("mysql://x")
    assert "sqlite" in e.value.hint


def test_add_is_idempotent_by_content_hash(store: SQLStore) -> None:
    assert store.add_pins([pin("a", title="Red dress")]) == [(1, True)]
    assert store.add_pins([pin("a", title="other")]) == [(1, False)]
    assert store.count_pins() == 1
    assert store.get_pin(1).title == "Red dress"
    # the second source ref is recorded, so a resumed ingest skips it too
    assert store.known_sources() == {"a.jpg"}


def test_same_hash_twice_in_one_batch(store: SQLStore) -> None:
    assert store.add_pins([pin("a"), pin("a")]) == [(1, True), (1, False)]


def test_roundtrip_fields_and_vectors(store: SQLStore) -> None:
    store.add_pins(
        [pin("b", tags=["x", "y"], labels=[("dog", 0.9)], attributes={"price": 3, "c": "red"})]
    )
    p = store.get_pin(1)
    assert p.tags == ["x", "y"] and p.labels == [("dog", 0.9)]
    assert p.attributes == {"price": 3, "c": "red"}
    ids, mat, models = store.get_vectors("image")
    assert ids.tolist() == [1] and models == ["m@1"]
    np.testing.assert_array_equal(mat[0], np.arange(4, dtype=np.float32) + 1)


def test_unknown_ids_raise_not_found(store: SQLStore) -> None:
    with pytest.raises(NotFound):
        store.get_pin(42)
    with pytest.raises(NotFound):
        store.delete_pin(42)
    with pytest.raises(NotFound):
        store.update_pin(42, {"title": "x"})
    assert store.get_pins([42]) == {}


def test_update_rejects_unknown_fields(store: SQLStore) -> None:
    store.add_pins([pin("c")])
    with pytest.raises(InvalidInput):
        store.update_pin(1, {"content_hash": "evil"})


def test_fts_finds_title_and_user_tags_with_prefix(store: SQLStore) -> None:
    store.add_pins(
        [
            pin("a", title="Summer dress", tags=["linen"]),
            pin("b", title="Winter boots", tags=["cowboy boot"], labels=[("cowboy boot", 0.8)]),
        ]
    )
    assert [p for p, _ in store.fts_search("dress")] == [1]
    assert [p for p, _ in store.fts_search("linen")] == [1]
    assert [p for p, _ in store.fts_search("boo")] == [2]  # prefix on the last word
    # a model label is a tag for filters, but BM25 covers only words people wrote
    assert store.fts_search("cowboy") == []
    assert store.filter_ids(tag="cowboy boot").tolist() == [2]
    assert store.fts_search('") OR *') == []  # FTS syntax in user input is inert


def test_fts_query_quotes_words() -> None:
    assert fts_query('red "dress" AND') == '"red" OR "dress" OR "and"*'
    assert fts_query("  ") == ""


def test_filters(store: SQLStore) -> None:
    store.add_pins(
        [
            pin("a", board="shoes", tags=["red"], attributes={"size": "42"}),
            pin("b", board="hats", tags=["blue"], attributes={"size": 42}),
        ]
    )
    assert store.filter_ids() is None
    assert store.filter_ids(board="shoes").tolist() == [1]
    assert store.filter_ids(tag="blue").tolist() == [2]
    assert sorted(store.filter_ids(attributes={"size": "42"}).tolist()) == [1, 2]
    assert store.filter_ids(board="none").tolist() == []
    with pytest.raises(InvalidInput):
        store.filter_ids(attributes={"bad key')": "x"})


def test_change_log_collapses_to_last_op(store: SQLStore) -> None:
    store.add_pins([pin("a"), pin("b")])
    seq, ups, dels = store.changes_since(0)
    assert (sorted(ups), dels) == ([1, 2], [])
    store.delete_pin(1)
    last, ups, dels = store.changes_since(seq)
    assert ups == [] and dels == [1] and last > seq
    assert store.get_vectors("image")[0].tolist() == [2]


def test_tokens_hashed_and_revocable(store: SQLStore) -> None:
    info, secret = store.create_token("ci", "editor")
    assert store.verify_token(secret).role == "editor"  # type: ignore[union-attr]
    with store.read() as conn:
        stored = conn.exec_driver_sql("SELECT token_hash FROM tokens").scalar_one()
    assert secret not in stored
    store.revoke_token(info.id)
    assert store.verify_token(secret) is None
    with pytest.raises(Conflict):
        store.revoke_token(info.id)
    with pytest.raises(InvalidInput):
        store.create_token("x", "root")


def test_quarantine_and_runs(store: SQLStore) -> None:
    store.start_run("r1", "folder")
    store.add_quarantine("r1", [QuarantineEntry("bad.jpg", "truncated", "cut short")])
    store.finish_run("r1", "partial", {"added": 0})
    rows = store.quarantine_report("r1")
    assert [(r.source, r.reason) for r in rows] == [("bad.jpg", "truncated")]


def test_concurrent_writers_do_not_lose_rows(store: SQLStore) -> None:
    def work(k: int) -> None:
        for i in range(20):
            store.add_pins([pin(f"{k:02d}{i:02d}")])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count_pins() == 80


def test_kv_and_audit(store: SQLStore) -> None:
    store.set_kv("k", {"a": 1})
    store.set_kv("k", {"a": 2})
    assert store.get_kv("k") == {"a": 2}
    assert store.get_kv("missing", 5) == 5
    store.audit(1, "admin", "read", "tokens")
    assert store.audit_entries()[0]["target"] == "tokens"


def test_reopen_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'y.db'}"
    s = open_store(url)
    s.add_pins([pin("z")])
    s.close()
    assert open_store(url).count_pins() == 1
