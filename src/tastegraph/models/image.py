"""The offline ``lite`` image encoder (EfficientNet-Lite2 or -Lite0) and the image-encoder factory.

Example
-------
>>> enc = make_image_encoder(get_settings())                        # doctest: +SKIP
>>> pixels = [enc.preprocess(img) for img in images]  # shapes may differ # doctest: +SKIP
>>> out = enc.encode(pixels)                                        # doctest: +SKIP
>>> from tastegraph.models.labels import top_labels                  # doctest: +SKIP
>>> top_labels(out.probs[0], enc.label_names, k=5, min_prob=0.05)   # doctest: +SKIP
[('Labrador Retriever', 0.71), ('Golden Retriever', 0.12)]
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import InvalidInput
from tastegraph.imaging.geometry import wide_side
from tastegraph.models.base import ImageEncoder, ImageOutput
from tastegraph.models.labels import imagenet_label_names
from tastegraph.models.lite_files import (
    DEFAULT_INPUT_SIZE,
    IMAGE_SIZE,
    ExportOptions,
    Pooling,
    export_file,
)
from tastegraph.models.preprocess import CROP_FRACTION, preprocess_image
from tastegraph.models.runtime import CompiledModel, load_compiled, resolve_runtime

if TYPE_CHECKING:
    from tastegraph.settings import Settings

__all__ = [
    "KNOWN_PACKS",
    "LiteImageEncoder",
    "draft_size",
    "make_image_encoder",
]

KNOWN_PACKS = ("lite", "clip:<name>")

# Bump when preprocessing or the exported graph changes in a way that moves vectors.
# 2: CROP_FRACTION 0.875 -> 1.0. 3: the input side is a setting (default 256, was 224) and is
# part of the model id. On clothing (bench/eval_quality_push.py protocol, product re-ranking)
# 224 -> 256 -> 288 gives mAP@10 0.636 -> 0.645 -> 0.648 over all real classes, and the same
# on each contributor half; 320 falls back (0.586 without re-ranking, vs 0.600 at 288). Flickr
# caption R@10 does not move (0.288 / 0.290 / 0.287). 256 buys most of the gain for 1.3x compute.
# With ``image_max_aspect`` > 1 the id also names the wide side (``-w320``): photos that are
# clearly landscape or portrait are then seen whole up to that aspect, which moves their vectors.
# The id starts with the variant (``lite2-gem3-s288@3``), so vectors of another variant never mix.
LITE_VERSION = 3


def draft_size(input_size: int = IMAGE_SIZE, crop_fraction: float = CROP_FRACTION) -> int:
    """Smallest shorter side a JPEG may be decoded to (``Image.draft``) without losing detail.

    Decoders should call ``img.draft("RGB", (s, s))`` with this ``s`` before loading: libjpeg then
    decodes at 1/2, 1/4 or 1/8 scale, which is 2-3x faster for camera-sized photos.
    """
    return int(np.ceil(input_size / crop_fraction))


class LiteImageEncoder:
    """EfficientNet-Lite image encoder: GeM-pooled 1280-d descriptor plus ImageNet probabilities.

    ``settings.models.image`` picks the variant (Lite2 by default, Lite0 for speed) and
    ``settings.models.image_input_size`` the square side (default: the variant's, see
    :data:`~tastegraph.models.lite_files.DEFAULT_INPUT_SIZE`).

    The model is exported to ONNX under ``<data_dir>/models`` on first use and run with the runtime
    chosen by :func:`tastegraph.models.runtime.resolve_runtime`. Construction is cheap; the export
    and compilation happen on the first :meth:`encode` (or :meth:`load`).
    """

    input_size: int = IMAGE_SIZE
    dim: int = 1280
    crop_fraction: float = CROP_FRACTION

    def __init__(
        self,
        settings: Settings,
        *,
        pooling: Pooling = "gem",
        gem_p: float = 3.0,
    ) -> None:
        self.settings = settings
        self.variant = settings.models.image
        self.input_size = int(settings.models.image_input_size or DEFAULT_INPUT_SIZE[self.variant])
        self.max_aspect = float(settings.models.image_max_aspect)
        self.options = ExportOptions(
            variant=self.variant, pooling=pooling, gem_p=gem_p, image_size=self.input_size
        )
        pool = f"gem{gem_p:g}" if pooling == "gem" else "avg"
        s, wide = self.input_size, wide_side(self.input_size, self.max_aspect)
        # Every (rows, cols) the model accepts: the square, then the landscape and portrait ones.
        self.input_shapes: list[tuple[int, int]] = [(s, s)]
        if wide > s:
            self.input_shapes += [(s, wide), (wide, s)]
        shapes = f"-w{wide}" if wide > s else ""
        self.model_id = f"{self.variant}-{pool}-s{s}{shapes}@{LITE_VERSION}"
        self.label_names = imagenet_label_names()
        self.batch_size = settings.models.batch_size
        self._models: dict[tuple[int, int], CompiledModel] = {}
        # The compiled requests are reused call after call: concurrent encode() calls take turns.
        self._lock = threading.Lock()

    @property
    def models_dir(self) -> Path:
        return self.settings.data_dir / "models"

    def load(self, shape: tuple[int, int] | None = None) -> CompiledModel:
        """Export (once) and compile the model for ``shape`` (default: the square) now instead of
        on the first :meth:`encode` that needs it."""
        with self._lock:
            return self._load(shape or self.input_shapes[0])

    def _load(self, shape: tuple[int, int]) -> CompiledModel:
        model = self._models.get(shape)
        if model is None:
            path = export_file(self.models_dir, self.options, shape=shape)
            if not path.is_file():  # first use: torch is needed only to write the export
                from tastegraph.models.lite import export_onnx

                path = export_onnx(self.models_dir, self.options, shape=shape)
            choice = resolve_runtime(self.settings.models.runtime, self.settings.models.precision)
            model = load_compiled(path, choice, cache_dir=self.models_dir / "ov-cache")
            self._models[shape] = model
        return model

    @property
    def runtime(self) -> str:
        """``"<runtime>/<precision>"`` in use, e.g. ``"openvino/bf16"`` (compiles if needed)."""
        model = self.load()
        return f"{model.runtime}/{model.precision}"

    def preprocess(self, image: object) -> NDArray[np.uint8]:
        return preprocess_image(image, self.input_size, self.crop_fraction, self.max_aspect)

    def encode(self, pixels: NDArray[np.uint8] | Sequence[NDArray[np.uint8]]) -> ImageOutput:
        """Model inputs -> outputs, in order.

        ``pixels`` is one uint8 (N, rows, cols, 3) array or a sequence of (rows, cols, 3) arrays,
        each of a shape in :attr:`input_shapes`; inputs of each shape run as their own batches.
        """
        groups = _group_by_shape(pixels, self.input_shapes)
        n = sum(len(idx) for idx, _ in groups.values())
        k = len(self.label_names)
        feats = np.zeros((n, self.dim), np.float32)
        probs = np.zeros((n, k), np.float32)
        local = np.zeros((n, k), np.float32)
        with self._lock:
            for shape, (idx, batch) in groups.items():
                model = self._load(shape)
                for start in range(0, len(idx), self.batch_size):
                    rows = idx[start : start + self.batch_size]
                    chunk = np.ascontiguousarray(batch[start : start + self.batch_size])
                    out = model.run({"pixels": chunk})
                    feats[rows], probs[rows] = out["features"], out["probs"]
                    local[rows] = out["local_probs"]
        # Re-normalise: bf16 inference leaves norms a little off 1.
        feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        return ImageOutput(features=feats, probs=probs, local_probs=local)


def _group_by_shape(
    pixels: NDArray[np.uint8] | Sequence[NDArray[np.uint8]], shapes: list[tuple[int, int]]
) -> dict[tuple[int, int], tuple[NDArray[np.intp], NDArray[np.uint8]]]:
    """{(rows, cols): (positions in the input, stacked pixels)}; checks dtype and shapes."""
    allowed = " or ".join(f"(N, {r}, {c}, 3)" for r, c in shapes)
    ok = {(r, c, 3) for r, c in shapes}
    if isinstance(pixels, np.ndarray):
        if pixels.dtype != np.uint8 or tuple(pixels.shape[1:]) not in ok or pixels.ndim != 4:
            raise InvalidInput(
                f"pixels must be uint8 of shape {allowed}, got {pixels.dtype} {pixels.shape}"
            )
        shape = (int(pixels.shape[1]), int(pixels.shape[2]))
        return {shape: (np.arange(len(pixels)), pixels)} if len(pixels) else {}
    where: dict[tuple[int, int], list[int]] = {}
    for i, p in enumerate(pixels):
        a = np.asarray(p)
        if a.dtype != np.uint8 or a.shape not in ok:
            raise InvalidInput(
                f"image {i}: pixels must be uint8 of shape {allowed} without N, "
                f"got {a.dtype} {a.shape}"
            )
        where.setdefault((int(a.shape[0]), int(a.shape[1])), []).append(i)
    return {
        shape: (np.array(idx), np.stack([np.asarray(pixels[i]) for i in idx]))
        for shape, idx in where.items()
    }


def make_image_encoder(settings: Settings) -> ImageEncoder:
    """The image encoder of ``settings.models.pack``: ``"lite"`` or ``"clip:<name>"``."""
    pack = settings.models.pack.strip()
    if pack == "lite":
        return LiteImageEncoder(settings)
    if pack.startswith("clip:") and pack[len("clip:") :]:
        from tastegraph.models.clip import ClipImageEncoder

        return ClipImageEncoder(settings, pack[len("clip:") :])
    raise InvalidInput(
        f"unknown model pack {pack!r}",
        hint=f"use one of: {', '.join(KNOWN_PACKS)}",
        known=list(KNOWN_PACKS),
    )
