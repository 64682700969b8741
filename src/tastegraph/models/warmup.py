"""One-off model work done up front, saying what it is doing: exports, compiles, label vectors.

A fresh data dir has no model exports (MiniLM ~20 s, the image model ~40 s) and no ConSE label
vectors (~10 s); done lazily they land inside the first batch of the first ingest, where a
progress bar sits at ``0/N`` and the measured rate is wrong. :func:`prepare` does them before
the clock starts; each step that is slow only the first time is announced through ``say``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tastegraph.models.base import Encoders
    from tastegraph.settings import Settings

__all__ = ["prepare", "text_export_message"]

Say = Callable[[str], None]


class ModelHost(Protocol):
    """Settings and the encoders they describe (built on first use)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def encoders(self) -> Encoders: ...


def text_export_message(model_pack: str, models_dir: Path) -> str:
    """What building the encoders will say: exporting the text model once, or nothing (quick)."""
    if model_pack.strip() == "lite":
        from tastegraph.models.text import onnx_path

        try:
            exported = onnx_path(models_dir).is_file()
        except OSError:  # the checkpoint is missing: building the encoders will say so
            exported = True
        if not exported:
            return "exporting the text model (once, ~20 s)..."
    return ""


def _warm_image(enc: Encoders, say: Say) -> None:
    image = enc.image
    load = getattr(image, "load", None)
    if load is None:
        return
    shapes = list(getattr(image, "input_shapes", None) or [None])
    options, models_dir = getattr(image, "options", None), getattr(image, "models_dir", None)
    missing = False
    if options is not None and models_dir is not None:
        from tastegraph.models.lite_files import export_file

        missing = any(not export_file(models_dir, options, shape=s).is_file() for s in shapes)
    say("exporting the image model (once, ~40 s)..." if missing else "loading the image model...")
    for shape in shapes:
        load(shape)


def _warm_bridge(enc: Encoders, say: Say) -> None:
    bridge = enc.bridge
    warm = getattr(bridge, "warm_up", None)
    if warm is None:
        return
    if not getattr(bridge, "labels_ready", True):
        say("building label vectors (once, ~10 s)...")
    warm()


def prepare(app: ModelHost, say: Say) -> float:
    """Build every encoder ingest uses and do their one-off work now; returns the seconds spent."""
    t0 = time.perf_counter()
    message = text_export_message(app.settings.models.pack, app.settings.data_dir / "models")
    if message:
        say(message)
    enc = app.encoders
    _warm_image(enc, say)
    _warm_bridge(enc, say)
    return time.perf_counter() - t0
