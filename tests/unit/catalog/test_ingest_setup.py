"""First-run behaviour: one-off model work before the clock, honest rates, dead-run detection,
and read commands that refuse an absent or empty catalog instead of creating one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tastegraph.app import App, build
from tastegraph.catalog.runs import STALE_S, is_dead
from tastegraph.models.base import ImageOutput
from tastegraph.settings import Settings
from tests import fixtures as fx
from tests.fakes import fake_encoders

# ---------------------------------------------------------------------------- one-off work


class _SlowFirstBridge:
    """Wraps the fake bridge: the first transform builds 'label vectors' for ``cost`` s, as the
    real ConSE bridge does on a fresh data dir, unless ``warm_up`` ran first."""

    def __init__(self, inner: Any, cost: float) -> None:
        self._inner, self._cost, self._ready = inner, cost, False
        self.model_id, self.dim = inner.model_id, inner.dim

    @property
    def labels_ready(self) -> bool:
        return self._ready

    def warm_up(self) -> None:
        if not self._ready:
            time.sleep(self._cost)
            self._ready = True

    def transform(self, out: ImageOutput) -> Any:
        self.warm_up()
        return self._inner.transform(out)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_label_vectors_are_built_before_the_clock(fake_app: App, tmp_path: Path) -> None:
    fake_app.encoders.bridge = _SlowFirstBridge(fake_app.encoders.bridge, 1.0)  # type: ignore[assignment]
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        (tmp_path / "imgs" / f"{i}.jpg").write_bytes(fx.jpeg_bytes(64, 48, seed=i))
    report = fake_app.catalog.ingest(str(tmp_path / "imgs"), progress=False)
    assert report.added == 3
    assert report.setup_seconds >= 1.0
    # the build is not inside the run: neither in its stages nor in its rate
    assert report.timings.get("bridge_tags", 0.0) < 0.5
    assert report.seconds < report.setup_seconds
    assert report.to_dict()["setup_seconds"] >= 1.0


def test_each_one_off_step_is_announced(
    fake_app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tastegraph.models.warmup import prepare

    loaded: list[object] = []
    image = fake_app.encoders.image
    image.load = loaded.append  # type: ignore[attr-defined]
    image.options = SimpleNamespace()  # type: ignore[attr-defined]
    image.models_dir = tmp_path  # type: ignore[attr-defined]
    fake_app.encoders.bridge = _SlowFirstBridge(fake_app.encoders.bridge, 0.0)  # type: ignore[assignment]
    said: list[str] = []
    import tastegraph.models.lite_files as lf

    export = tmp_path / "image.onnx"
    monkeypatch.setattr(lf, "export_file", lambda d, o, shape=None: export)
    from tastegraph.models import text

    text_export = tmp_path / "text.onnx"
    monkeypatch.setattr(text, "onnx_path", lambda d, m=None: text_export)
    prepare(fake_app, said.append)
    assert said == [
        "exporting the text model (once, ~20 s)...",
        "exporting the image model (once, ~40 s)...",
        "building label vectors (once, ~10 s)...",
    ]
    assert loaded == list(image.input_shapes)  # every input shape compiled up front
    said.clear()
    export.write_bytes(b"exported")
    text_export.write_bytes(b"exported")
    prepare(fake_app, said.append)  # now all is at hand: nothing "once" is announced
    assert not any("once" in s for s in said)


def test_the_rate_is_the_average_since_the_bar_started() -> None:
    from tastegraph.progress import _RateColumn

    task = SimpleNamespace(completed=120, elapsed=10.0, finished=False, finished_time=None)
    assert "12.0 img/s" in str(_RateColumn("img").render(task))  # type: ignore[arg-type]
    task = SimpleNamespace(completed=0, elapsed=0.01, finished=False, finished_time=None)
    assert "--" in str(_RateColumn("img").render(task))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- dead runs


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@given(
    age=st.floats(0, 3 * STALE_S),
    same_host=st.booleans(),
    alive=st.booleans(),
)
def test_a_run_is_dead_when_its_process_is_gone_or_silent(
    age: float, same_host: bool, alive: bool
) -> None:
    now = 1_000_000.0
    pid = os.getppid() if alive else _DEAD
    host = socket.gethostname() if same_host else "some-other-host"
    record = {"pid": pid, "host": host, "heartbeat": now - age}
    dead = is_dead(record, now=now, started=now - age)
    if age > STALE_S:
        assert dead  # silent for long: dead whatever the pid says (pids are reused)
    elif same_host:
        assert dead == (not alive)
    else:
        assert not dead  # another host's run that still beats


_DEAD = _dead_pid()


@given(st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5))))
def test_an_odd_owner_record_never_raises(record: dict[str, str] | None) -> None:
    assert isinstance(is_dead(record, now=time.time(), started=0.0), bool)  # type: ignore[arg-type]


# --------------------------------------------------------------------- no catalog, no models


def _no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    import tastegraph.models as models

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(models, "make_encoders", boom)


@pytest.mark.parametrize(
    "args",
    [["search", "red dress"], ["similar", "1"], ["feed", "1"], ["related", "1"], ["duplicates"]],
)
def test_read_commands_without_a_catalog_say_how_to_fill_one(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tastegraph.cli import app as cli

    _no_models(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TASTEGRAPH_DATA_DIR", raising=False)
    t0 = time.perf_counter()
    r = CliRunner().invoke(cli, args)
    out = " ".join(r.output.split())
    assert r.exit_code != 0 and "no catalog" in out.lower() and "tastegraph ingest" in out
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "tastegraph-data").exists()  # nothing was created

    # a data dir whose catalog is empty says so too
    build(Settings(data_dir=tmp_path / "d")).close()
    r = CliRunner().invoke(cli, [*args, "--data", str(tmp_path / "d")])
    assert r.exit_code != 0 and "is empty" in " ".join(r.output.split())


def test_read_commands_work_once_the_catalog_has_pins(tmp_path: Path) -> None:
    from tastegraph.catalog.existing import open_existing

    s = Settings(data_dir=tmp_path / "d", index_kind="exact")
    app = build(s, encoders=fake_encoders())
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(fx.jpeg_bytes(seed=1))
    app.catalog.ingest(str(tmp_path / "imgs"), progress=False)
    app.close()
    again = open_existing(s, build)
    assert again.store.count_pins() == 1
    again.close()


def test_demo_with_an_empty_images_folder_says_so(tmp_path: Path) -> None:
    from tastegraph.demo import pick_demo_source
    from tastegraph.errors import InvalidInput

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    with pytest.raises(InvalidInput, match="no image files"):
        pick_demo_source(Settings(data_dir=tmp_path / "d"), tmp_path / "empty")
    (tmp_path / "empty" / "a.jpg").write_bytes(fx.jpeg_bytes(seed=1))
    assert pick_demo_source(Settings(data_dir=tmp_path / "d"), tmp_path / "empty")[0] == (
        tmp_path / "empty"
    )


def test_decode_workers_default_to_the_cores_this_process_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tastegraph.catalog.pipeline import decode_pool

    monkeypatch.setattr(decode_pool.os, "sched_getaffinity", lambda _pid: {0, 3}, raising=False)
    monkeypatch.setattr(decode_pool.os, "cpu_count", lambda: 64)
    assert decode_pool.usable_cores() == 2  # a 64-core host of which this process gets 2
