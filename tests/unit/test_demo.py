"""The demo catalog source: your folder, the clothing photos, or bundled samples; no crash."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tastegraph import demo
from tastegraph.errors import InvalidInput
from tastegraph.settings import Settings
from tests import fixtures as fx


def test_own_folder_wins(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "d", eval_data=tmp_path / "none")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8")  # a folder with no images is refused
    src, why = demo.pick_demo_source(s, tmp_path)
    assert src == tmp_path and "your images" in why
    with pytest.raises(InvalidInput):
        demo.pick_demo_source(s, tmp_path / "missing")


def test_local_clothing_copy_is_used(tmp_path: Path) -> None:
    (tmp_path / "clothing" / "images").mkdir(parents=True)
    s = Settings(data_dir=tmp_path / "d", eval_data=tmp_path)
    src, why = demo.pick_demo_source(s, None)
    assert src == tmp_path / "clothing" / "images" and "clothing" in why


def test_offline_falls_back_to_bundled_photos(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*a: object, **k: object) -> Path:
        raise OSError("network unreachable")

    monkeypatch.setattr(demo, "download_clothing", offline)
    s = Settings(data_dir=tmp_path / "d", eval_data=tmp_path / "none")
    src, why = demo.pick_demo_source(s, None)
    assert isinstance(src, list) and len(src) >= 1 and all(p.is_file() for p in src)
    assert "could not be downloaded" in why and "OSError" in why


def test_download_unpacks_once_and_records_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("repo/images/a.jpg", fx.jpeg_bytes(seed=1)), ("repo/README.md", b"x"),
                           ("repo/images/../../evil.jpg", fx.jpeg_bytes(seed=2))]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    calls = []

    class Resp:
        content = blob

        def raise_for_status(self) -> None:
            return None

    class Client:
        def __init__(self, **kw: object) -> None:
            pass

        def __enter__(self) -> Client:
            return self

        def __exit__(self, *a: object) -> None:
            return None

        def get(self, url: str) -> Resp:
            calls.append(url)
            return Resp()

    import httpx

    monkeypatch.setattr(httpx, "Client", Client)
    images = demo.download_clothing(tmp_path / "c", url="http://127.0.0.1/x.tar.gz")
    assert sorted(p.name for p in images.iterdir()) == ["a.jpg", "evil.jpg"]
    assert not (tmp_path / "evil.jpg").exists()  # archive paths never escape the folder
    assert (tmp_path / "c" / "SHA256").read_text().split()[0] == __import__("hashlib").sha256(
        blob
    ).hexdigest()
    demo.download_clothing(tmp_path / "c", url="http://127.0.0.1/x.tar.gz")
    assert len(calls) == 1  # done once
