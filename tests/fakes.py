"""A small deterministic encoder pack for fast tests (the real models are tested separately)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from tastegraph.models.base import Encoders, ImageOutput

F32 = NDArray[np.float32]


def _l2(x: NDArray[np.float64]) -> F32:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


class FakeImageEncoder:
    """Colour histogram features: images of similar colours are neighbours."""

    model_id = "fake-image@1"
    dim = 64
    input_size = 32
    label_names: ClassVar[list[str]] = ["red thing", "green thing", "blue thing", "grey thing"]

    max_aspect = 1.0  # > 1: wide inputs as the lite encoder has them (see imaging.geometry)

    @property
    def input_shapes(self) -> list[tuple[int, int]]:
        from tastegraph.imaging.geometry import wide_side

        s, w = self.input_size, wide_side(self.input_size, self.max_aspect)
        return [(s, s)] + ([(s, w), (w, s)] if w > s else [])

    def preprocess(self, image: object) -> NDArray[np.uint8]:
        from tastegraph.models.preprocess import preprocess_image

        return preprocess_image(image, size=self.input_size, max_aspect=self.max_aspect)

    def encode(self, pixels: NDArray[np.uint8] | Sequence[NDArray[np.uint8]]) -> ImageOutput:
        feats = []
        probs = []
        for one in pixels:
            img = np.asarray(one, np.float64) / 255.0
            n = img.shape[0] * img.shape[1]
            h = [np.histogram(img[..., c], bins=16, range=(0, 1))[0] / n for c in range(3)]
            means = img.reshape(-1, 3).mean(0)
            feats.append(np.concatenate([*h, means * 3, [0.1] * 13]))
            grey = 1.0 - (means.max() - means.min())
            logits = np.array([*means * 4, grey * 2])
            p = np.exp(logits * 3)
            probs.append(p / p.sum())
        return ImageOutput(_l2(np.array(feats)), np.array(probs, np.float32))


class FakeTextEncoder:
    """Hashed bag of words."""

    model_id = "fake-text@1"
    dim = 128

    def encode(self, texts: list[str]) -> F32:
        out = np.zeros((len(texts), self.dim))
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
            out[i, 0] += 1e-3
        return _l2(out)


class FakeBridge:
    model_id = "fake-bridge@1"
    dim = 128

    def __init__(self, text: FakeTextEncoder, labels: list[str]) -> None:
        self.text = text
        self.label_vecs = text.encode(labels)

    def transform(self, image_output: ImageOutput) -> F32:
        assert image_output.probs is not None
        return _l2(image_output.probs.astype(np.float64) @ self.label_vecs)

    def encode_query(self, texts: list[str]) -> F32:
        return self.text.encode(texts)


def fake_encoders() -> Encoders:
    img = FakeImageEncoder()
    text = FakeTextEncoder()
    return Encoders(image=img, text=text, bridge=FakeBridge(text, img.label_names))
