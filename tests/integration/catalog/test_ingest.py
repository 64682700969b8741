"""Ingest end to end: every bad input has a defined outcome; a killed run resumes cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tastegraph.app import App, build
from tastegraph.settings import Settings
from tests import fixtures as fx
from tests.conftest import REPO
from tests.fakes import fake_encoders


def write_catalog(folder: Path) -> dict[str, str]:
    """Good and bad files; returns file name -> expected reason ("" when accepted)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = {
        "good.jpg": (fx.jpeg_bytes(seed=1), ""),
        "good.png": (fx.png_bytes(seed=2), ""),
        "good.webp": (fx.webp_bytes(), ""),
        "cmyk.jpg": (fx.cmyk_jpeg(), ""),
        "deep.png": (fx.png16_rgb(), ""),
        "alpha.png": (fx.rgba_png(), ""),
        "anim.gif": (fx.animated_gif(), ""),
        "anim.webp": (fx.animated_webp(), ""),
        "rotated.jpg": (fx.exif_rotated_jpeg(), ""),
        "truncated.jpg": (fx.truncated_jpeg(), "truncated"),
        "page.jpg": (fx.html_bytes(), "not_an_image"),
        "doc.pdf": (fx.pdf_bytes(), "unsupported_format"),
        "bomb.png": (fx.bomb_png(), "too_many_pixels"),
        "noise.jpg": (fx.random_bytes(), "not_an_image"),
        "empty.png": (b"", "not_an_image"),
    }
    for name, (data, _) in cases.items():
        (folder / name).write_bytes(data)
    return {name: reason for name, (_, reason) in cases.items()}


def test_every_input_has_a_defined_outcome(fake_app: App, tmp_path: Path) -> None:
    expected = write_catalog(tmp_path / "imgs")
    report = fake_app.catalog.ingest(str(tmp_path / "imgs"), progress=False)
    got = {Path(q.source).name: q.reason for q in report.quarantine}
    for name, reason in expected.items():
        if reason:
            assert name in got, name
            assert got[name] in (reason, "decompression_bomb"), (name, got[name])
        else:
            assert name not in got, (name, got.get(name))
    accepted = sum(1 for r in expected.values() if not r)
    assert report.added == accepted and report.partial
    # quarantine is persisted with reasons
    assert len(fake_app.store.quarantine_report(report.run_id)) == len(got)
    # every accepted pin has vectors in all spaces it should, a thumbnail and a pHash
    for pin in fake_app.store.list_pins(limit=100):
        assert len(pin.phash) == 16
        assert fake_app.store.get_thumbnail(pin.id)[:4] in (b"RIFF", b"\xff\xd8\xff\xe0")
    assert len(fake_app.store.get_vectors("image")[0]) == accepted
    assert len(fake_app.indexes.get("image")) == accepted


def test_reingest_does_nothing(fake_app: App, tmp_path: Path) -> None:
    write_catalog(tmp_path / "imgs")
    first = fake_app.catalog.ingest(str(tmp_path / "imgs"), progress=False)
    again = fake_app.catalog.ingest(str(tmp_path / "imgs"), progress=False)
    assert again.added == 0 and again.skipped == first.added
    # the same bytes under another name are recognised by content hash
    (tmp_path / "imgs" / "copy.jpg").write_bytes((tmp_path / "imgs" / "good.jpg").read_bytes())
    third = fake_app.catalog.ingest(str(tmp_path / "imgs"), progress=False)
    assert third.added == 0 and third.existing == 1


def test_manifest_metadata_and_bad_rows(fake_app: App, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(fx.jpeg_bytes(seed=5))
    (tmp_path / "b.jpg").write_bytes(fx.jpeg_bytes(seed=6))
    (tmp_path / "m.jsonl").write_text(
        json.dumps(
            {
                "image": "a.jpg",
                "title": "Linen shirt",
                "board": "tops",
                "tags": ["linen"],
                "colour": "white",
            }
        )
        + "\n"
        + "{not json\n"
        + json.dumps({"path": "b.jpg", "description": "Boots", "tags": "leather|brown"})
        + "\n"
        + json.dumps({"image": "missing.jpg"})
        + "\n"
    )
    report = fake_app.catalog.ingest(str(tmp_path / "m.jsonl"), progress=False)
    assert report.added == 2
    reasons = sorted(q.reason for q in report.quarantine)
    assert reasons == ["bad_row", "unreadable_file"]
    pins = {p.title or p.description: p for p in fake_app.store.list_pins()}
    shirt = pins["Linen shirt"]
    assert (
        shirt.board == "tops" and "linen" in shirt.tags and shirt.attributes == {"colour": "white"}
    )
    assert {"leather", "brown"} <= set(pins["Boots"].tags)
    # manifest text is searchable and has a text vector
    assert fake_app.search.text("linen shirt").hits[0].pin_id == shirt.id
    assert shirt.id in fake_app.store.get_vectors("text")[0].tolist()


def test_cli_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    from tastegraph.cli import app as cli

    r = CliRunner().invoke(cli, ["ingest", str(tmp_path / "nope"), "--data", str(tmp_path / "d")])
    # The console wraps long lines (here: a long temporary path) wherever it likes.
    assert r.exit_code == 1 and "does not exist" in " ".join(r.output.split())


def make_many(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"img{i:04d}.jpg").write_bytes(fx.jpeg_bytes(160, 120, seed=i))


def test_killed_ingest_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    n = 160
    make_many(tmp_path / "imgs", n)
    data = tmp_path / "data"
    # This checkout's source first: an installed copy elsewhere must not stand in for it.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.catalog.ingest_child",
            str(data),
            str(tmp_path / "imgs"),
        ],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    app = None
    deadline = time.monotonic() + 120
    committed = 0
    try:
        while time.monotonic() < deadline:
            if (data / "tastegraph.db").exists():
                app = app or build(Settings(data_dir=data, index_kind="exact"))
                committed = app.store.count_pins()
                if committed >= 20:
                    break
            if proc.poll() is not None:
                pytest.fail(f"child ended early: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # a real kill, workers included
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert 20 <= committed < n, "the kill should land mid-run"
    if app is not None:
        app.close()

    app = build(Settings(data_dir=data, index_kind="exact", batch_size=8), encoders=fake_encoders())
    before = app.store.count_pins()
    report = app.catalog.ingest(str(tmp_path / "imgs"), progress=False)
    # the killed run is no longer "running": it is marked interrupted, and this run resumed it
    assert len(report.interrupted) == 1
    with app.store.read() as conn:
        statuses = dict(conn.exec_driver_sql("SELECT id, status FROM ingest_runs").fetchall())
    assert statuses == {report.interrupted[0].run_id: "interrupted", report.run_id: "complete"}
    # finished work is not redone, nothing is lost, nothing is duplicated
    assert report.skipped == before
    assert report.added == n - before
    assert app.store.count_pins() == n
    ids, mat, _ = app.store.get_vectors("image")
    assert len(ids) == n == len(set(ids.tolist()))
    idx = app.indexes.get("image")
    assert len(idx) == n and sorted(idx.ids().tolist()) == sorted(ids.tolist())
    hashes = [p.content_hash for p in app.store.list_pins(limit=1000)]
    assert len(set(hashes)) == n
    # a query still finds each image itself first (index and store agree)
    q = app.indexes.to_index_space("image", mat[:5])
    _, found = idx.search(q, 1)
    assert found[:, 0].tolist() == ids[:5].tolist()
    app.close()
    assert np.isfinite(mat).all()


def test_a_query_photo_is_decoded_at_least_at_the_model_side(
    fake_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Search by photo draft-decodes a large JPEG (fast) as ingest does, never below the model's
    input side, which can exceed the thumbnail size (Lite2 sees 288 px, thumbnails are 256)."""
    import io

    from PIL import Image

    import tastegraph.search.service as service

    monkeypatch.setattr(fake_app.encoders.image, "input_size", 288)
    decoded: list[tuple[int, int]] = []
    real = service.decode_image

    def spy(*args: object, **kwargs: object) -> object:
        dec = real(*args, **kwargs)  # type: ignore[arg-type]
        decoded.append(dec.image.size)
        return dec

    monkeypatch.setattr(service, "decode_image", spy)
    buf = io.BytesIO()
    Image.new("RGB", (1100, 1100), (200, 40, 40)).save(buf, "JPEG")
    fake_app.search.encode_query_image(buf.getvalue())
    # JPEG draft scales by 1/2, 1/4 or 1/8: 1/4 (275 px) would be below 288, so 1/2 it is.
    assert decoded == [(550, 550)]
