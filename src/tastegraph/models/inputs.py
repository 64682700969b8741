"""What callers derive from a loaded image encoder: its input function and its tag labels."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.models.base import ImageEncoder

__all__ = ["preprocess_for", "tag_labels"]


def preprocess_for(image: ImageEncoder) -> Callable[[Any], NDArray[np.uint8]]:
    """The image model's input from a decoded RGB image (crop and resize).

    Picklable and free of the model code, so that ingest's decode workers run this very
    function without importing torch (about 2.5 s of CPU per worker); it is what the
    ``lite`` encoder's own ``preprocess`` does.
    """
    from tastegraph.catalog.images import model_input

    return functools.partial(
        model_input,
        size=image.input_size,
        crop_fraction=getattr(image, "crop_fraction", 1.0),
        max_aspect=getattr(image, "max_aspect", 1.0),
    )


def tag_labels(
    image: ImageEncoder, probs: NDArray[np.float32], k: int = 3
) -> list[list[tuple[str, float]]]:
    """The labels that become tags, per image: the ``k`` best of at least 15%."""
    from tastegraph.models.image import top_labels

    names = list(image.label_names)
    # Only confident labels become tags: a 3% guess is noise in search and filters.
    return [top_labels(p, names, k=k, min_prob=0.15) for p in probs]
