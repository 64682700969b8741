"""What ingest's decode workers derive from one decoded image, and how cheaply they start."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tastegraph.app import App
from tastegraph.errors import ImageRejected
from tastegraph.imaging.geometry import model_input
from tastegraph.imaging.hashes import hamming, perceptual_hash, quick_perceptual_hash
from tastegraph.imaging.limits import ImageLimits
from tastegraph.imaging.read import read_source_bytes
from tastegraph.imaging.thumbnails import (
    quick_thumbnail,
    quick_thumbnail_and_phash,
    thumbnail_image,
)
from tastegraph.models.preprocess import preprocess_image
from tests import fixtures as fx
from tests.conftest import REPO

SHAPES = [(400, 533), (533, 400), (31, 17), (256, 256), (1000, 301), (257, 1)]


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("size", [224, 256])
@pytest.mark.parametrize("crop", [1.0, 0.875])
def test_model_input_is_preprocess_image_bit_for_bit(size: int, crop: float) -> None:
    for i, (w, h) in enumerate(SHAPES):
        for img in (_noise(w, h, i), Image.fromarray(fx.photo_array(w, h, seed=i))):
            got = model_input(img, size, crop)
            want = preprocess_image(img, size, crop)
            assert got.dtype == np.uint8 and got.shape == (size, size, 3)
            assert np.array_equal(got, want), (w, h)


def test_app_preprocess_is_the_model_input_and_light_to_unpickle(fake_app: App) -> None:
    """Decode workers unpickle the app's preprocess without the model code or torch."""
    pre = fake_app.preprocess
    img = _noise(300, 200)
    assert np.array_equal(pre(img), preprocess_image(img, fake_app.encoders.image.input_size))
    code = (
        "import pickle, sys\n"
        "f = pickle.loads(sys.stdin.buffer.read())\n"
        "from PIL import Image\n"
        "assert f(Image.new('RGB', (300, 200))).shape[2] == 3\n"
        "heavy = [m for m in ('torch', 'sqlalchemy', 'tastegraph.models', 'tastegraph.store')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(pre),
        capture_output=True,
        cwd=REPO,
        check=True,
    )
    assert out.stdout.decode().strip() == ""


@pytest.mark.parametrize(
    "shape",
    [(400, 533), (533, 400), (512, 512), (256, 100), (257, 3), (3, 1000), (100, 80), (600, 599)],
)
def test_quick_thumbnail_has_thumbnail_image_size_and_look(shape: tuple[int, int]) -> None:
    img = Image.fromarray(fx.photo_array(*shape, seed=3))
    want = thumbnail_image(img, 256)
    got, digest = quick_thumbnail_and_phash(img, 256)
    assert quick_thumbnail(img, 256).tobytes() == got.tobytes()
    assert got.size == want.size and got.mode == "RGB"
    if got.size == img.size:
        assert got is img  # nothing to do: no copy
    a, b = np.asarray(got, np.float64), np.asarray(want, np.float64)
    mse = float(((a - b) ** 2).mean())
    assert mse == 0.0 or 10 * np.log10(255**2 / mse) > 28
    assert len(digest) == 16
    if min(want.size) >= 32:  # a pHash of a sliver of pixels means little either way
        assert hamming(digest, perceptual_hash(want)) <= 4


def test_quick_perceptual_hash_agrees_with_perceptual_hash() -> None:
    hashes = []
    for seed in range(12):
        img = Image.fromarray(fx.photo_array(400, 533, seed=seed))
        quick = quick_perceptual_hash(img)
        assert len(quick) == 16 and int(quick, 16) >= 0
        assert hamming(quick, perceptual_hash(thumbnail_image(img, 256))) <= 4
        assert quick_thumbnail_and_phash(img, 256, phash=False)[1] == ""
        hashes.append(quick)
    # different pictures stay far apart
    far = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(far) > 6


def test_read_source_bytes_reads_whole_files_up_to_the_limit(tmp_path: Path) -> None:
    data = fx.jpeg_bytes(seed=4)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    exact = ImageLimits(max_bytes=len(data), max_pixels=10**8)
    assert read_source_bytes(str(path), exact, timeout=1, allow_url=False) == data
    small = ImageLimits(max_bytes=len(data) - 1, max_pixels=10**8)
    with pytest.raises(ImageRejected) as e:
        read_source_bytes(str(path), small, timeout=1, allow_url=False)
    assert e.value.reason == "too_large_bytes"
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert read_source_bytes(str(tmp_path / "empty.jpg"), exact, timeout=1, allow_url=False) == b""
