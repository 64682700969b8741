"""One person's data on both backends: exported whole, erased in one transaction that either
happens whole or not at all, leaving everyone else's data as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tastegraph.errors import NotFound
from tastegraph.store import NewPin
from tastegraph.store import personal as personal_module
from tastegraph.store.ports import Store


def _pins(store: Store, n: int) -> list[int]:
    items = [
        NewPin(
            content_hash=f"{i:064x}",
            source=f"p{i}.jpg",
            vectors={"image": ("m@1", np.full(4, i, dtype=np.float32))},
        )
        for i in range(1, n + 1)
    ]
    return [pid for pid, _ in store.add_pins(items)]


def _person(store: Store, handle: str, pins: list[int], first_key: int) -> int:
    uid = int(store.create_user(handle)["id"])
    board = int(store.create_board(uid, "looks")["id"])
    for p in pins[:2]:
        store.save_pin(board, p)
    store.add_events(
        [
            {
                "key": f"k{first_key + i}",
                "user_id": uid,
                "pin_id": p,
                "kind": "save",
                "ts": 10.0 + i,
            }
            for i, p in enumerate(pins)
        ]
    )
    return uid


def _counts(store: Store, uid: int) -> tuple[int, int, int]:
    doc = store.user_export(uid)
    return len(doc["boards"]), sum(len(b["saves"]) for b in doc["boards"]), len(doc["events"])


def test_an_export_holds_the_user_their_boards_saves_and_events(store: Store) -> None:
    pins = _pins(store, 3)
    ann = _person(store, "ann", pins, 0)
    _person(store, "bob", pins[1:], 100)
    doc = store.user_export(ann)
    assert doc["user"]["handle"] == "ann"
    assert [b["name"] for b in doc["boards"]] == ["looks"]
    assert [s["pin_id"] for s in doc["boards"][0]["saves"]] == pins[:2]
    assert [e["pin_id"] for e in doc["events"]] == pins and {
        e["user_id"] for e in doc["events"]
    } == {ann}
    json.dumps(doc)  # JSON as it is
    with pytest.raises(NotFound):
        store.user_export(999_999)


def test_erasure_removes_exactly_that_person_and_says_so_without_naming_them(store: Store) -> None:
    pins = _pins(store, 3)
    ann = _person(store, "ann", pins, 0)
    bob = _person(store, "bob", pins[1:], 100)
    generation = store.events_generation()
    record = store.erase_user(ann, actor=(None, "local"))
    assert {k: record[k] for k in ("boards", "saves", "events")} == {
        "boards": 1,
        "saves": 2,
        "events": 3,
    }
    with pytest.raises(NotFound) as gone:
        store.get_user(ann)
    with pytest.raises(NotFound) as never:
        store.get_user(999_999)
    assert gone.value.message.replace(str(ann), "N") == never.value.message.replace("999999", "N")
    assert _counts(store, bob) == (1, 2, 2)  # everyone else untouched
    assert store.count_events() == 2 and store.events_generation() != generation
    entry = store.audit_entries(1)[0]
    assert (
        entry["action"] == "erase_user"
        and json.loads(entry["target"])["erasure"] == record["erasure"]
    )
    assert "ann" not in entry["target"] and f"{ann}" not in json.loads(entry["target"]).values()
    with pytest.raises(NotFound):  # twice: as if it never existed
        store.erase_user(ann, actor=(None, "local"))


def test_an_erasure_that_fails_midway_leaves_everything(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    pins = _pins(store, 3)
    ann = _person(store, "ann", pins, 0)

    def crash(*_: object) -> None:
        raise RuntimeError("killed after the deletes, before the commit")

    monkeypatch.setattr(personal_module, "audit_row", crash)
    with pytest.raises(RuntimeError):
        store.erase_user(ann, actor=(None, "local"))
    assert _counts(store, ann) == (1, 2, 3)
    monkeypatch.undo()
    assert store.erase_user(ann, actor=(None, "local"))["events"] == 3  # the rerun finishes
