"""Artefacts as local files: a folder packed the same way twice is one version; a fetched copy
is cached by digest; a tar that is not one of ours is refused, nothing extracted."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest

from tastegraph.errors import NotFound
from tastegraph.store.artefact_cache import cache_dir, fetch_file, fetch_folder, pack_folder
from tastegraph.store.ports import Store


def _folder(root: Path) -> Path:
    (root / "ranker").mkdir(parents=True)
    (root / "feed.json").write_text("{}")
    (root / "ranker" / "m.txt").write_bytes(b"\x00\x01" * 100)
    return root


def test_packing_is_repeatable_and_a_fetch_unpacks_it_once(store: Store, tmp_path: Path) -> None:
    src = _folder(tmp_path / "m")
    first = pack_folder(src)
    time.sleep(0.01)
    (src / "feed.json").touch()  # a newer mtime changes nothing
    assert pack_folder(src) == first
    info = store.put_artefact("feed_model", first)
    out = fetch_folder(store, info.digest, tmp_path / "data")
    assert out == cache_dir(tmp_path / "data") / info.digest
    assert (out / "ranker" / "m.txt").read_bytes() == b"\x00\x01" * 100
    calls = []

    class Counting:
        def get_artefact(self, digest: str) -> bytes:
            calls.append(digest)
            return store.get_artefact(digest)

    assert fetch_folder(Counting(), info.digest, tmp_path / "data") == out and not calls
    one = store.put_artefact("projection", b"npz bytes")
    path = fetch_file(Counting(), one.digest, tmp_path / "data")
    assert path.read_bytes() == b"npz bytes" and calls == [one.digest]
    assert fetch_file(Counting(), one.digest, tmp_path / "data") == path and len(calls) == 1


def test_a_tar_reaching_outside_its_folder_is_refused(store: Store, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    bad = store.put_artefact("feed_model", buf.getvalue())
    with pytest.raises(NotFound, match="not a folder this version wrote"):
        fetch_folder(store, bad.digest, tmp_path / "data")
    assert not (tmp_path / "data" / "models" / "escape.txt").exists()
    assert not (cache_dir(tmp_path / "data") / bad.digest).exists()
    assert [p.name for p in cache_dir(tmp_path / "data").iterdir()] == []
