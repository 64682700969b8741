"""Encoder protocols: every model pack (``lite``, ``clip:<name>``) implements these.

Example
-------
>>> enc = make_encoders(settings)                      # doctest: +SKIP
>>> out = enc.image.encode(pixels)                     # (N, S, S, 3) uint8 -> features + probs
>>> q = enc.text.encode(["red summer dress"])          # (1, D_text), L2-normalised
>>> v = enc.bridge.transform(out.probs)                # image in text space (ConSE)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

__all__ = ["Encoders", "ImageEncoder", "ImageOutput", "TextBridge", "TextEncoder"]

F32 = NDArray[np.float32]


@dataclass
class ImageOutput:
    """What one forward pass gives for a batch of N images."""

    features: F32  # (N, D_image), L2-normalised image descriptor used for visual similarity
    probs: F32 | None  # (N, n_labels) label probabilities, or None for packs without a classifier
    # (N, n_labels) mean of the label probabilities predicted on small regions of each image (what
    # is beside the main object); None for packs that give none. Only the text bridge uses it.
    local_probs: F32 | None = None


@runtime_checkable
class ImageEncoder(Protocol):
    model_id: str  # stable id recorded on every vector, e.g. "lite0-gem@1"
    dim: int
    input_size: int  # shorter side of the model input (the square's side)
    label_names: list[str]  # human-readable label for each probs column ([] if none)

    def preprocess(self, image: object) -> NDArray[np.uint8]:
        """A decoded RGB ``PIL.Image`` -> (rows, cols, 3) uint8 model input.

        A (input_size, input_size) square, or for an encoder that sees wider frames (``lite``
        with ``image_max_aspect`` > 1) one of a few landscape or portrait shapes.
        """
        ...

    def encode(self, pixels: NDArray[np.uint8] | Sequence[NDArray[np.uint8]]) -> ImageOutput:
        """Model inputs (one (N, rows, cols, 3) uint8 array, or a sequence of ``preprocess``
        outputs of possibly different shapes) -> features and label probabilities, in order."""
        ...


@runtime_checkable
class TextEncoder(Protocol):
    model_id: str
    dim: int

    def encode(self, texts: list[str]) -> F32:
        """Texts -> (N, dim) L2-normalised float32."""
        ...


@runtime_checkable
class TextBridge(Protocol):
    """Maps an image into text space so that words can find pictures (ConSE for ``lite``)."""

    model_id: str
    dim: int

    def transform(self, image_output: ImageOutput) -> F32:
        """Image outputs -> (N, dim) L2-normalised vectors comparable with text queries."""
        ...

    def encode_query(self, texts: list[str]) -> F32:
        """Text queries -> (N, dim) vectors to compare with ``transform`` output."""
        ...


@dataclass
class Encoders:
    image: ImageEncoder
    text: TextEncoder
    bridge: TextBridge
