"""Optional dependencies: a missing extra is named in the error, and serving never imports one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from tastegraph import cli
from tastegraph.errors import MissingExtra, TastegraphError
from tastegraph.evaluation.recs.evaluate import evaluate_recs
from tastegraph.evaluation.recs.models import ALS, BPR
from tastegraph.evaluation.simulator.run import simulate
from tastegraph.extras import EXTRAS, require
from tests.conftest import REPO


def _uninstall(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``import name`` fail as it does where the package is not installed."""
    for name in names:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: ImportError


def test_require_returns_the_module() -> None:
    assert require("json", extra="eval", purpose="Reading JSON").__name__ == "json"


def test_require_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _uninstall(monkeypatch, "implicit")
    with pytest.raises(MissingExtra) as info:
        require("implicit.cpu.als", extra="eval", purpose="The ALS recommender")
    err = info.value
    assert isinstance(err, TastegraphError) and err.code == "missing_extra"
    assert err.message == "The ALS recommender needs implicit, which is not installed."
    assert err.hint == "pip install 'tastegraph[eval]'"
    assert err.details == {"extra": "eval", "package": "implicit"}
    assert isinstance(err.__cause__, ImportError)


def test_require_uses_the_distribution_name(monkeypatch: pytest.MonkeyPatch) -> None:
    _uninstall(monkeypatch, "open_clip")
    with pytest.raises(MissingExtra, match="needs open-clip-torch"):
        require("open_clip", extra="clip", purpose="The clip pack", package="open-clip-torch")


@pytest.mark.parametrize("model", [ALS, BPR])
def test_matrix_factorisation_peers_need_the_eval_extra(
    monkeypatch: pytest.MonkeyPatch, model: type[ALS] | type[BPR]
) -> None:
    _uninstall(monkeypatch, "implicit")
    X = sp.csr_matrix(np.eye(4, dtype=np.float32))
    with pytest.raises(MissingExtra, match=r"needs implicit") as info:
        model(iterations=1).fit(X)
    assert "tastegraph[eval]" in info.value.hint


@pytest.mark.parametrize("missing", ["implicit", "matplotlib"])
def test_eval_recs_fails_before_any_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, missing: str
) -> None:
    """The check comes first: the dataset (absent here) is not even read."""
    _uninstall(monkeypatch, missing)
    with pytest.raises(MissingExtra, match=f"needs {missing}"):
        evaluate_recs(tmp_path / "absent", "loo", progress=False)


def test_eval_recs_command_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _uninstall(monkeypatch, "implicit")
    result = CliRunner().invoke(cli.app, ["eval", "recs", "--dataset", str(tmp_path)])
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert "needs implicit" in text and "pip install 'tastegraph[eval]'" in text


def test_simulate_with_a_plot_fails_before_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    _uninstall(monkeypatch, "matplotlib")
    vecs = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    with pytest.raises(MissingExtra, match="needs matplotlib"):
        simulate(vecs, ["b"] * 40, [""] * 40, users=2, sessions=1, plot_path="x.png")


def test_extras_match_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    core = " ".join(project["dependencies"])
    for extra, packages in EXTRAS.items():
        declared = " ".join(optional[extra])
        for package in packages:
            assert package in declared, f"{package} is not in the {extra!r} extra"
            assert package not in core, f"{package} is both a core dependency and in {extra!r}"
    # `make test` installs `.[dev]`, so dev must pull in every extra the tests exercise.
    assert "tastegraph[eval]" in optional["dev"]


def test_serving_imports_no_extra() -> None:
    """The API server, the app and the CLI import none of the extras' packages."""
    code = (
        "import sys\n"
        "import tastegraph.api.server, tastegraph.app, tastegraph.cli, tastegraph.server\n"
        "print(sorted(m for m in ('implicit', 'matplotlib', 'ray') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
