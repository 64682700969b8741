"""Artefact files in the store (``ports.ArtefactFiles``), on every backend."""

from __future__ import annotations

import hashlib
import os

import pytest
import sqlalchemy as sa

from tastegraph.errors import InvalidInput, NotFound
from tastegraph.store import artefact_files
from tastegraph.store import schema as t
from tastegraph.store.ports import ArtefactFiles, Store


def test_put_then_get_by_digest_latest_by_name_and_list(store: Store) -> None:
    files: ArtefactFiles = store
    a = files.put_artefact("feed_model", b"one", {"version": "v1"})
    assert a.digest == hashlib.sha256(b"one").hexdigest() and a.size == 3
    b = files.put_artefact("feed_model", b"two", {"version": "v2"})
    files.put_artefact("projection", b"one")  # the same bytes under another name
    assert files.get_artefact(a.digest) == b"one"
    assert files.latest_artefact("feed_model") == b
    assert files.latest_artefact("feed_model").provenance == {"version": "v2"}  # type: ignore[union-attr]
    assert files.latest_artefact("nothing") is None
    assert [i.digest for i in files.list_artefacts("feed_model")] == [a.digest, b.digest]
    assert len(files.list_artefacts()) == 3
    with store.read() as conn:  # bytes kept once per digest
        chunks = conn.execute(sa.select(sa.func.count()).select_from(t.artefact_chunks))
        assert chunks.scalar_one() == 2


def test_the_same_bytes_again_is_the_same_version(store: Store) -> None:
    first = store.put_artefact("m", b"x" * 10, {"n": 1})
    again = store.put_artefact("m", b"x" * 10, {"n": 2})
    assert again == first and len(store.list_artefacts("m")) == 1


def test_large_bytes_are_chunked_and_come_back_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artefact_files, "CHUNK", 1000)
    data = os.urandom(4321)
    info = store.put_artefact("big", data)
    with store.read() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(t.artefact_chunks)).scalar_one()
    assert n == 5
    assert store.get_artefact(info.digest) == data
    assert store.get_artefact(store.put_artefact("empty", b"").digest) == b""


def test_only_the_newest_versions_of_a_name_are_kept(store: Store) -> None:
    infos = [store.put_artefact("m", bytes([i])) for i in range(artefact_files.KEEP + 2)]
    kept = store.list_artefacts("m")
    assert [i.digest for i in kept] == [i.digest for i in infos[-artefact_files.KEEP :]]
    with pytest.raises(NotFound):
        store.get_artefact(infos[0].digest)


def test_unknown_damaged_and_badly_named_artefacts_are_clear_errors(store: Store) -> None:
    with pytest.raises(NotFound, match="no artefact with digest"):
        store.get_artefact("0" * 64)
    info = store.put_artefact("m", b"abcdef")
    with store.write() as conn:
        conn.execute(t.artefact_chunks.update().values(data=b"abc"))
    with pytest.raises(NotFound, match="incomplete or damaged"):
        store.get_artefact(info.digest)
    for bad in ("", "x" * 129):
        with pytest.raises(InvalidInput, match="artefact name"):
            store.put_artefact(bad, b"1")
