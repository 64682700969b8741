"""``eval retrieval|captions --store URL``: the evaluation catalog in a store of the caller's
choosing, which must be empty (the evaluation never mixes its images into a real catalog)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tastegraph import cli
from tastegraph.errors import Conflict
from tastegraph.evaluation import evaluate_captions, evaluate_retrieval
from tastegraph.store import NewPin, open_store


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    images = tmp_path / "imgs"
    images.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / f"{name}.png")
    labels = tmp_path / "labels.csv"
    labels.write_text("image,label\na,Hat\nb,Hat\n")
    captions = tmp_path / "captions.csv"
    captions.write_text("image,caption\na,a black square\n")
    return images, labels, captions


def test_a_store_holding_a_catalog_is_refused_untouched(
    inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    images, labels, captions = inputs
    url = f"sqlite:///{tmp_path / 'real.db'}"
    s = open_store(url)
    s.add_pins([NewPin("f" * 64, "x.jpg", {"image": ("m@1", np.ones(4, np.float32))})])
    s.close()
    with pytest.raises(Conflict, match="already holds 1 pins") as e:
        evaluate_retrieval(images, labels, store_url=url, progress=False)
    assert "--store" in e.value.hint
    with pytest.raises(Conflict, match="already holds 1 pins"):
        evaluate_captions(images, captions, store_url=url, progress=False)
    s = open_store(url)
    assert s.count_pins() == 1
    s.close()
    args = ["eval", "retrieval", "--images", str(images), "--labels", str(labels)]
    res = CliRunner().invoke(cli.app, [*args, "--store", url])
    assert res.exit_code == 1 and "already holds" in " ".join(res.output.split())
    res = CliRunner().invoke(cli.app, [*args, "--store", "postgresql+psycopg://u:pw@127.0.0.1:1/x"])
    assert res.exit_code == 1 and "u:***@" in " ".join(res.output.split())
