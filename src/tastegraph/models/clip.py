"""The ``clip:<name>`` model pack: an open_clip model whose weights are already on disk.

``open_clip`` is an optional dependency (``pip install 'tastegraph[clip]'``) imported only when this
pack is built, and weights are never downloaded: ``settings.models.clip_weights`` must point at a
checkpoint file for architecture ``<name>`` (e.g. ``model_pack = "clip:ViT-B-32"`` with
``clip_weights = "/models/ViT-B-32-laion2b_s34b_b79k.bin"``).

Because image and text share one embedding space, the pack needs no ConSE bridge: the bridge's
``transform`` is the image embedding itself and its ``encode_query`` is the text encoder.
``probs`` are zero-shot ImageNet probabilities ("a photo of a {label}"), so tags and filters work
as with the ``lite`` pack; the 1000 label embeddings are computed once and cached next to the
exports.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import InvalidInput, ModelUnavailable
from tastegraph.models.base import Encoders, ImageOutput
from tastegraph.models.labels import imagenet_label_names
from tastegraph.models.preprocess import preprocess_image

if TYPE_CHECKING:
    from tastegraph.settings import Settings

__all__ = [
    "ClipBridge",
    "ClipImageEncoder",
    "ClipModel",
    "ClipTextEncoder",
    "make_encoders",
]

F32 = NDArray[np.float32]
INSTALL_HINT = "pip install 'tastegraph[clip]'"
# CLIP's own evaluation resizes the shorter side to the input size and centre-crops it whole.
CLIP_CROP_FRACTION = 1.0
# Logit scale of the zero-shot classifier; CLIP models learn ~100.
ZERO_SHOT_SCALE = 100.0
ZERO_SHOT_TEMPLATE = "a photo of a {}."
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise ModelUnavailable(
            "the 'clip' model pack needs open_clip, which is not installed",
            hint=f"{INSTALL_HINT}, or use model_pack = 'lite'",
        ) from exc
    return open_clip


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


class ClipModel:
    """One loaded open_clip model shared by the image encoder, text encoder and bridge."""

    def __init__(self, settings: Settings, name: str) -> None:
        weights = settings.models.clip_weights
        if weights is None or not Path(weights).is_file():
            raise ModelUnavailable(
                f"model pack 'clip:{name}' needs its weights on disk",
                hint="set clip_weights (TASTEGRAPH_CLIP_WEIGHTS) to the checkpoint file; "
                "weights are never downloaded",
            )
        open_clip = _import_open_clip()
        if name not in open_clip.list_models():
            raise InvalidInput(
                f"open_clip has no architecture {name!r}",
                hint="use one of open_clip.list_models(), e.g. clip:ViT-B-32",
            )
        import torch

        self.torch = torch
        self.name = name
        self.weights = Path(weights)
        self.digest = _file_digest(self.weights)
        # A file path as ``pretrained`` loads that checkpoint; nothing is fetched.
        self.model = open_clip.create_model(name, pretrained=str(self.weights), device="cpu")
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)
        visual = self.model.visual
        size = getattr(visual, "image_size", 224)
        self.input_size = int(size[0] if isinstance(size, tuple | list) else size)
        mean = getattr(visual, "image_mean", None) or OPENAI_MEAN
        std = getattr(visual, "image_std", None) or OPENAI_STD
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        with torch.inference_mode():
            probe = self.model.encode_text(self.tokenizer(["a photo"]))
        self.dim = int(probe.shape[-1])
        self.model_id = f"clip-{name}-{self.digest}@1"
        self.lock = threading.Lock()

    def encode_pixels(self, pixels: NDArray[np.uint8]) -> F32:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255.0
        x = (x - self.mean) / self.std
        with self.lock, torch.inference_mode():
            out = self.model.encode_image(x)
        return _l2(out.float().numpy())

    def encode_texts(self, texts: list[str]) -> F32:
        torch = self.torch
        with self.lock, torch.inference_mode():
            out = self.model.encode_text(self.tokenizer(list(texts)))
        return _l2(out.float().numpy())


def _l2(x: NDArray[np.floating]) -> F32:
    from tastegraph.models.whiten import l2_normalize

    return l2_normalize(x, axis=1)


class ClipImageEncoder:
    """:class:`~tastegraph.models.base.ImageEncoder` for an open_clip model.

    ``features`` are CLIP image embeddings (already comparable with text embeddings); ``probs``
    are zero-shot probabilities over the ImageNet-1k names, so tagging works as with ``lite``.
    """

    crop_fraction = CLIP_CROP_FRACTION

    def __init__(self, settings: Settings, name: str, model: ClipModel | None = None) -> None:
        self.settings = settings
        self.clip = model or ClipModel(settings, name)
        self.model_id = self.clip.model_id
        self.dim = self.clip.dim
        self.input_size = self.clip.input_size
        self.label_names = imagenet_label_names()
        self.batch_size = settings.models.batch_size
        self._label_emb: F32 | None = None

    def _label_embeddings(self) -> F32:
        """(1000, dim) text embeddings of the label prompts, cached under ``<data_dir>/models``."""
        if self._label_emb is not None:
            return self._label_emb
        path = self.settings.data_dir / "models" / f"clip-labels-{self.clip.digest}.npy"
        if path.is_file():
            emb = np.load(path, allow_pickle=False)
        else:
            prompts = [ZERO_SHOT_TEMPLATE.format(n) for n in self.label_names]
            emb = np.concatenate(
                [self.clip.encode_texts(prompts[i : i + 100]) for i in range(0, len(prompts), 100)]
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".clip-labels-", suffix=".npy.tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                np.save(f, emb)
            os.replace(tmp, path)
        self._label_emb = emb.astype(np.float32)
        return self._label_emb

    def preprocess(self, image: object) -> NDArray[np.uint8]:
        return preprocess_image(image, self.input_size, CLIP_CROP_FRACTION)

    def encode(self, pixels: NDArray[np.uint8] | Sequence[NDArray[np.uint8]]) -> ImageOutput:
        s = self.input_size
        if not isinstance(pixels, np.ndarray):  # a sequence of (s, s, 3) inputs
            pixels = np.stack(pixels) if len(pixels) else np.zeros((0, s, s, 3), np.uint8)
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (s, s, 3):
            raise InvalidInput(
                f"pixels must be uint8 of shape (N, {s}, {s}, 3), got {pixels.dtype} {pixels.shape}"
            )
        if len(pixels) == 0:
            return ImageOutput(np.zeros((0, self.dim), np.float32), np.zeros((0, 1000), np.float32))
        feats = np.concatenate(
            [
                self.clip.encode_pixels(pixels[i : i + self.batch_size])
                for i in range(0, len(pixels), self.batch_size)
            ]
        )
        logits = ZERO_SHOT_SCALE * feats @ self._label_embeddings().T
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return ImageOutput(features=feats, probs=probs.astype(np.float32))


class ClipTextEncoder:
    """:class:`~tastegraph.models.base.TextEncoder`: CLIP's text tower, L2-normalised."""

    def __init__(self, model: ClipModel) -> None:
        self.clip = model
        self.model_id = f"{model.model_id}-text"
        self.dim = model.dim

    def encode(self, texts: list[str]) -> F32:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self.clip.encode_texts(texts)


class ClipBridge:
    """:class:`~tastegraph.models.base.TextBridge` for a joint model: the identity on images."""

    def __init__(self, model: ClipModel, text: ClipTextEncoder) -> None:
        self.model_id = f"{model.model_id}-joint"
        self.dim = model.dim
        self._text = text

    def transform(self, image_output: ImageOutput) -> F32:
        return _l2(image_output.features)

    def encode_query(self, texts: list[str]) -> F32:
        return self._text.encode(texts)


def make_encoders(settings: Settings) -> Encoders:
    """Image encoder, text encoder and bridge of the ``clip:<name>`` pack (one shared model)."""
    pack = settings.models.pack.strip()
    name = pack.removeprefix("clip:")
    if not pack.startswith("clip:") or not name:
        raise InvalidInput(f"not a clip pack: {pack!r}", hint="use model_pack = 'clip:<name>'")
    model = ClipModel(settings, name)
    text = ClipTextEncoder(model)
    return Encoders(
        image=ClipImageEncoder(settings, name, model),
        text=text,
        bridge=ClipBridge(model, text),
    )
