"""``--ray-address`` where no Ray answers, and ``--ray`` without the extra: one clear line, fast."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tastegraph import cli
from tastegraph.catalog.pipeline.ray_session import RayOptions, check_answers, ray_session
from tastegraph.errors import MissingExtra, RayUnavailable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def mute_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (not Ray)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for c in held:
        c.close()


def test_a_refused_address_is_named_with_a_hint_at_once() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    with pytest.raises(RayUnavailable) as info:
        check_answers(address)
    assert time.monotonic() - t0 < 2
    err = info.value
    assert err.message.startswith(f"no Ray cluster answers at {address} (")
    assert "ray start --head" in err.hint and "without an address" in err.hint
    assert err.details == {"address": address}


def test_a_port_that_is_not_ray_fails_within_the_timeout(mute_port: int) -> None:
    t0 = time.monotonic()
    with pytest.raises(RayUnavailable, match="does not speak Ray's protocol within 1 s"):
        check_answers(f"ray://127.0.0.1:{mute_port}", timeout=1.0)
    assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("address", ["ray://", "host:notaport"])
def test_a_malformed_address_is_named(address: str) -> None:
    with pytest.raises(RayUnavailable, match="is not a Ray address"):
        check_answers(address)


def test_ray_session_checks_the_address_before_joining(mute_port: int) -> None:
    """Ray's own client would retry a mute port for minutes; the session gives up in seconds."""
    pytest.importorskip("ray")
    t0 = time.monotonic()
    with (
        pytest.raises(RayUnavailable, match=f"127.0.0.1:{mute_port}"),
        ray_session(RayOptions(address=f"127.0.0.1:{mute_port}")),
    ):
        pass
    assert time.monotonic() - t0 < 10  # 3 s of waiting, plus importing ray


def test_ingest_with_an_unreachable_ray_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    result = CliRunner().invoke(
        cli.app,
        ["ingest", str(tmp_path / "imgs"), "--data", str(tmp_path / "d"), "--ray-address", address],
    )
    assert time.monotonic() - t0 < 10
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"error: no Ray cluster answers at {address} (")
    assert lines[1].startswith("hint: start a cluster there")


def test_ingest_with_ray_but_without_the_extra_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for loaded in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, "ray", None)  # as where the package is not installed
    with pytest.raises(MissingExtra, match=r"needs ray\[data\]"), ray_session(RayOptions()):
        pass
    (tmp_path / "imgs").mkdir()
    result = CliRunner().invoke(cli.app, ["ingest", str(tmp_path / "imgs"), "--ray"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "error: Running on Ray (--ray) needs ray[data], which is not installed." in text
    assert "hint: pip install 'tastegraph[ray]'" in text
    assert not (tmp_path / "imgs" / "tastegraph.db").exists()


def test_reindex_with_ray_but_without_reencode_says_what_ray_would_run(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    result = CliRunner().invoke(cli.app, ["reindex", "--data", str(tmp_path / "d"), "--ray"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "error: --ray runs the re-encoding: it needs --reencode" in text
    assert "tastegraph reindex --reencode --ray" in text
