"""Re-ingesting words for known images, the run's own near-duplicates, dead runs, empty sources."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tastegraph.app import App, build
from tastegraph.catalog.runs import _KEY
from tastegraph.catalog.sources import _csv_value
from tastegraph.settings import Settings
from tests import fixtures as fx
from tests.conftest import REPO
from tests.fakes import fake_encoders


def _folder(root: Path, n: int = 3) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = root / f"img{i}.jpg"
        p.write_bytes(fx.jpeg_bytes(96, 72, seed=40 + i))
        paths.append(p)
    return paths


def _manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, keys)
        w.writeheader()
        w.writerows(rows)
    return path


def test_a_manifest_after_the_folder_updates_the_words(fake_app: App, tmp_path: Path) -> None:
    imgs = _folder(tmp_path / "imgs")
    first = fake_app.catalog.ingest(str(tmp_path / "imgs"), progress=False)
    assert first.added == 3
    by_source = {p.source: p for p in fake_app.store.list_pins()}
    labels_before = {s: [lab for lab, _ in p.labels] for s, p in by_source.items()}
    m = _manifest(
        tmp_path / "words.csv",
        [
            {"image": "imgs/img0.jpg", "title": "Velvet blazer", "board": "jackets",
             "tags": "velvet|smart", "colour": "plum"},
            {"image": "imgs/img1.jpg", "title": "", "board": "", "tags": "", "colour": ""},
        ],
    )  # fmt: skip
    report = fake_app.catalog.ingest(str(m), progress=False)
    assert (report.added, report.skipped, report.updated, report.unchanged) == (0, 2, 1, 1)
    pin = fake_app.store.get_pin(by_source[str(imgs[0])].id)
    assert pin.title == "Velvet blazer" and pin.board == "jackets"
    assert pin.attributes == {"colour": "plum"}
    # people's tags first, the model's labels kept after them
    assert pin.tags[:2] == ["velvet", "smart"]
    assert set(labels_before[str(imgs[0])]) <= set(pin.tags)
    # the text vector follows, and both searches find the new words
    assert pin.id in fake_app.store.get_vectors("text")[0].tolist()
    assert fake_app.search.text("velvet blazer").hits[0].pin_id == pin.id
    # the empty row changed nothing
    assert fake_app.store.get_pin(by_source[str(imgs[1])].id).title == ""
    again = fake_app.catalog.ingest(str(m), progress=False)
    assert (again.updated, again.unchanged) == (0, 2)


def test_empty_cells_do_not_erase_words(fake_app: App, tmp_path: Path) -> None:
    _folder(tmp_path / "imgs", 1)
    fake_app.catalog.ingest(
        str(_manifest(tmp_path / "a.csv", [{"image": "imgs/img0.jpg", "title": "Linen shirt",
                                             "description": "loose fit", "tags": "linen"}])),
        progress=False,
    )  # fmt: skip
    r = fake_app.catalog.ingest(
        str(_manifest(tmp_path / "b.csv", [{"image": "imgs/img0.jpg", "title": "",
                                             "description": "", "board": "tops", "tags": ""}])),
        progress=False,
    )  # fmt: skip
    assert r.updated == 1
    (pin,) = fake_app.store.list_pins()
    assert (pin.title, pin.description, pin.board) == ("Linen shirt", "loose fit", "tops")
    assert "linen" in pin.tags


def test_same_bytes_under_another_name_get_the_words_too(fake_app: App, tmp_path: Path) -> None:
    (src,) = _folder(tmp_path / "imgs", 1)
    fake_app.catalog.ingest(str(tmp_path / "imgs"), progress=False)
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "same.jpg").write_bytes(src.read_bytes())
    m = _manifest(tmp_path / "m.csv", [{"image": "copy/same.jpg", "title": "Red scarf"}])
    r = fake_app.catalog.ingest(str(m), progress=False)
    assert (r.added, r.existing, r.updated) == (0, 1, 1)
    (pin,) = fake_app.store.list_pins()
    assert pin.title == "Red scarf"
    assert fake_app.search.text("red scarf").hits[0].pin_id == pin.id
    # the rerun knows the reference now, and changes nothing
    again = fake_app.catalog.ingest(str(m), progress=False)
    assert (again.skipped, again.updated, again.unchanged) == (1, 0, 1)


_words = st.text(st.characters(codec="utf-8", categories=("L", "N")), max_size=8)
_row = st.fixed_dictionaries(
    {"title": _words, "board": _words, "tags": st.lists(_words, max_size=3), "size": _words}
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(_row, min_size=1, max_size=4))
def test_rows_for_known_images_any_words(
    fake_app: App, tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, object]]
) -> None:
    """Whatever words rows carry for a known image: the last non-empty cell of each field wins,
    empty cells keep what was there, every row is counted once (updated or unchanged), and
    ingesting the same manifest again changes nothing."""
    tmp = tmp_path_factory.mktemp("rows")
    (img,) = _folder(tmp / "imgs", 1)
    # earlier examples' pins share the store: match this image by its bytes' pin
    fake_app.catalog.ingest(str(tmp / "imgs"), progress=False)
    pin_id = fake_app.store.source_pins()[str(img)]
    assert pin_id is not None
    before = fake_app.store.get_pin(pin_id)
    csv_rows = [
        {"image": "imgs/img0.jpg", "title": r["title"], "board": r["board"],
         "tags": "|".join(t for t in r["tags"] if t), "size": r["size"]}  # type: ignore[attr-defined]
        for r in rows
    ]  # fmt: skip
    m = _manifest(tmp / "m.csv", csv_rows)
    report = fake_app.catalog.ingest(str(m), progress=False)
    assert report.updated + report.unchanged == report.skipped + report.existing == len(rows)
    pin = fake_app.store.get_pin(pin_id)
    for name in ("title", "board"):
        given_ = [str(r[name]).strip() for r in csv_rows if str(r[name]).strip()]
        assert getattr(pin, name) == (given_[-1] if given_ else getattr(before, name))
    sizes = [str(r["size"]).strip() for r in csv_rows if str(r["size"]).strip()]
    if sizes:  # cells are typed as the manifest reader types them ("12" -> 12)
        assert pin.attributes["size"] == _csv_value(sizes[-1])
    labels = [lab for lab, _ in pin.labels]
    assert set(labels) <= set(pin.tags)
    again = fake_app.catalog.ingest(str(m), progress=False)
    assert again.updated == 0 and again.unchanged == len(rows)
    assert fake_app.store.get_pin(pin_id) == pin


def test_near_duplicate_count_is_the_runs_own(fake_app: App, tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    (a / "x.jpg").write_bytes(fx.jpeg_bytes(160, 120, seed=7, quality=92))
    (a / "x-copy.jpg").write_bytes(fx.jpeg_bytes(160, 120, seed=7, quality=60))
    first = fake_app.catalog.ingest(str(a), progress=False)
    assert first.near_duplicate_groups == 1
    b = tmp_path / "b"
    _folder(b, 2)
    second = fake_app.catalog.ingest(str(b), progress=False)
    assert second.added == 2 and second.near_duplicate_groups == 0
    assert len(fake_app.store.dup_groups()) == 1  # the catalog still has its group
    c = tmp_path / "c"
    c.mkdir()
    (c / "x-third.jpg").write_bytes(fx.jpeg_bytes(160, 120, seed=7, quality=75))
    assert fake_app.catalog.ingest(str(c), progress=False).near_duplicate_groups == 1


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_whose_process_died_is_marked_interrupted(fake_app: App, tmp_path: Path) -> None:
    import socket
    import time

    store = fake_app.store
    store.start_run("deadbeef", "somewhere")
    store.set_kv(
        _KEY + "deadbeef",
        {"pid": _dead_pid(), "host": socket.gethostname(), "heartbeat": time.time()},
    )
    store.start_run("alive", "elsewhere")  # this very process, beating: left alone
    store.set_kv(
        _KEY + "alive", {"pid": os.getpid(), "host": socket.gethostname(), "heartbeat": time.time()}
    )
    _folder(tmp_path / "imgs", 1)
    report = fake_app.catalog.ingest(str(tmp_path / "imgs"), progress=False)
    assert [r.run_id for r in report.interrupted] == ["deadbeef"]
    assert report.to_dict()["interrupted_runs"][0]["source"] == "somewhere"
    assert _status(fake_app, "deadbeef") == "interrupted"
    assert _status(fake_app, "alive") == "running"
    assert _status(fake_app, report.run_id) == "complete"
    assert store.get_kv(_KEY + report.run_id) is None  # a finished run leaves no owner record


def _status(app: App, run_id: str) -> str:
    import sqlalchemy as sa

    from tastegraph.store import schema as t

    with app.store.read() as conn:
        q = sa.select(t.ingest_runs.c.status).where(t.ingest_runs.c.id == run_id)
        return str(conn.execute(q).scalar_one())


def test_cli_ingest_says_an_earlier_run_was_interrupted(tmp_path: Path) -> None:
    from tastegraph.cli import app as cli

    data = tmp_path / "data"
    app = build(Settings(data_dir=data, index_kind="exact"), encoders=fake_encoders())
    _folder(tmp_path / "imgs", 2)
    app.catalog.ingest(str(tmp_path / "imgs"), progress=False)
    # its process is gone and has been silent for long:
    app.store.start_run("cafe0001", str(tmp_path / "imgs"))
    app.store.set_kv(_KEY + "cafe0001", {"pid": _dead_pid(), "host": "x", "heartbeat": 0.0})
    app.close()
    # every image is done: the CLI needs no model for this
    r = CliRunner().invoke(
        cli, ["ingest", str(tmp_path / "imgs"), "--data", str(data), "--no-progress"]
    )
    out = " ".join(r.output.split())
    assert r.exit_code == 0, out
    assert "cafe0001" in out and "was interrupted" in out and "this run resumed it" in out
    assert "2 done before" in out


def test_cli_ingest_of_an_empty_folder_is_a_warning_with_an_exit_code(tmp_path: Path) -> None:
    from tastegraph.cli import EXIT_EMPTY
    from tastegraph.cli import app as cli

    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(
        cli, ["ingest", str(tmp_path / "empty"), "--data", str(tmp_path / "d"), "--no-progress"]
    )
    assert r.exit_code == EXIT_EMPTY
    assert "nothing to ingest" in " ".join(r.output.split())


def _tiff_with_samples_per_pixel(value: int) -> bytes:
    """A TIFF whose SamplesPerPixel tag (277) says ``value``: Pillow logs an error about it."""
    import struct

    data = bytearray(fx.tiff_bytes())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 277:
            struct.pack_into("<H", data, entry + 8, value)
    return bytes(data)


def test_no_raw_library_message_is_printed_above_the_worded_rejection(tmp_path: Path) -> None:
    """A 100 Mpx PNG makes Pillow warn (over 89 Mpx) before our limit rejects it in words; a
    damaged TIFF makes it log an error; metadata damage makes it warn. None of it is printed."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    (imgs / "bomb.png").write_bytes(fx.bomb_png(10000, 10000))
    (imgs / "samples.tif").write_bytes(_tiff_with_samples_per_pixel(5000))
    (imgs / "ok.jpg").write_bytes(fx.jpeg_bytes(seed=3))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.catalog.ingest_child",
            str(tmp_path / "d"),
            str(imgs),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "1"
    assert "DecompressionBombWarning" not in proc.stderr
    assert "warnings.warn" not in proc.stderr
    assert "More samples per pixel" not in proc.stderr
    assert proc.stderr.strip() == ""


def test_server_start_marks_dead_runs_interrupted(
    fake_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    from tastegraph.server import _report_interrupted_ingests

    fake_app.store.start_run("0dead", "/photos")
    fake_app.store.set_kv(_KEY + "0dead", {"pid": _dead_pid(), "host": "h", "heartbeat": 0.0})
    with caplog.at_level("WARNING", logger="tastegraph"):
        _report_interrupted_ingests(fake_app)
    assert _status(fake_app, "0dead") == "interrupted"
    assert "0dead" in caplog.text and "tastegraph ingest /photos" in caplog.text


def test_uploading_a_known_image_with_words_gives_it_those_words(fake_app: App) -> None:
    from fastapi.testclient import TestClient

    from tastegraph.api import create_api

    _, secret = fake_app.store.create_token("ed", "editor")
    auth = {"Authorization": f"Bearer {secret}"}
    data = fx.jpeg_bytes(seed=11)
    with TestClient(create_api(fake_app)) as c:
        first = c.post("/pins/upload", files={"file": ("a.jpg", data)}, headers=auth)
        assert first.status_code == 201
        again = c.post(
            "/pins/upload",
            files={"file": ("b.jpg", data)},
            data={"title": "Green parka", "board": ""},
            headers=auth,
        )
        assert again.status_code == 200 and again.json()["created"] is False
        pin = again.json()["pin"]
        assert pin["id"] == first.json()["pin"]["id"] and pin["title"] == "Green parka"
        assert (
            c.get("/search", params={"q": "green parka"}, headers=auth).json()["results"][0]["pin"][
                "id"
            ]
            == pin["id"]
        )


def test_a_source_that_cannot_be_listed_leaves_no_run_running(
    fake_app: App, tmp_path: Path
) -> None:
    """The listing used to run before the run's try block: a missing source raised there and
    left its run ``running`` for good."""
    import sqlalchemy as sa

    from tastegraph.errors import InvalidInput
    from tastegraph.store import schema as t

    with pytest.raises(InvalidInput, match="does not exist"):
        fake_app.catalog.ingest(str(tmp_path / "nope"), progress=False)
    with fake_app.store.read() as conn:
        statuses = [r[0] for r in conn.execute(sa.select(t.ingest_runs.c.status))]
    assert statuses == ["failed"]
    assert not [k for k in _kv_keys(fake_app) if k.startswith(_KEY)]  # no owner left behind


def _kv_keys(app: App) -> list[str]:
    import sqlalchemy as sa

    from tastegraph.store import schema as t

    with app.store.read() as conn:
        return [str(r[0]) for r in conn.execute(sa.select(t.kv.c.key))]


def test_word_edits_are_all_or_none_unless_missing_pins_are_skipped(
    fake_app: App, tmp_path: Path
) -> None:
    from tastegraph.catalog.metadata import apply_edits
    from tastegraph.errors import NotFound

    _folder(tmp_path / "imgs", 1)
    fake_app.catalog.ingest(str(tmp_path / "imgs"), progress=False)
    (pin,) = fake_app.store.list_pins()
    gone = pin.id + 1000
    with pytest.raises(NotFound):
        apply_edits(fake_app.catalog, [(pin.id, {"title": "kept?"}), (gone, {"title": "x"})])
    assert fake_app.store.get_pin(pin.id).title == ""  # nothing stored
    done = apply_edits(
        fake_app.catalog,
        [(pin.id, {"title": "Wool coat"}), (gone, {"title": "x"})],
        skip_missing=True,
    )
    assert [p.id for p in done] == [pin.id]
    assert fake_app.store.get_pin(pin.id).title == "Wool coat"
    assert fake_app.search.text("wool coat").hits[0].pin_id == pin.id


@pytest.mark.parametrize(
    "make",
    [
        lambda d: (d / "src").mkdir(),
        lambda d: ((d / "src").mkdir(), (d / "src" / ".DS_Store").write_bytes(b"x")),
        lambda d: (d / "src.csv").write_text("image,title\n"),
        lambda d: (d / "src.csv").write_text("image,title\n\n  \n"),
        lambda d: (d / "src.jsonl").write_text("\n\n"),
    ],
    ids=["empty-folder", "hidden-only", "header-only-csv", "blank-csv", "blank-jsonl"],
)
def test_every_kind_of_empty_source_is_a_warning_with_exit_4(make: object, tmp_path: Path) -> None:
    from tastegraph.cli import EXIT_EMPTY
    from tastegraph.cli import app as cli

    make(tmp_path)  # type: ignore[operator]
    (src,) = [p for p in tmp_path.iterdir() if p.name.startswith("src")]
    r = CliRunner().invoke(
        cli, ["ingest", str(src), "--data", str(tmp_path / "d"), "--no-progress", "--json"]
    )
    assert r.exit_code == EXIT_EMPTY, r.output
    assert '"status": "empty"' in r.output
