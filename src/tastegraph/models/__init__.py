"""Encoders behind one protocol set (see :mod:`tastegraph.models.base`) and the pack factory.

Importing this package is cheap: torch, ONNX Runtime and the image model are imported only when a
model is built, so the CLI and API start fast and work before any model is exported.

Example
-------
>>> enc = make_encoders(get_settings())                             # doctest: +SKIP
>>> enc.text.encode(["red summer dress"]).shape                     # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tastegraph.errors import ModelUnavailable
from tastegraph.models.base import Encoders, ImageEncoder, ImageOutput, TextBridge, TextEncoder
from tastegraph.models.bridge import BridgeConfig, ConSEBridge, make_bridge
from tastegraph.models.text import MiniLMTextEncoder, make_text_encoder

if TYPE_CHECKING:
    from tastegraph.settings import Settings

__all__ = [
    "BridgeConfig",
    "ConSEBridge",
    "Encoders",
    "ImageEncoder",
    "ImageOutput",
    "MiniLMTextEncoder",
    "TextBridge",
    "TextEncoder",
    "make_bridge",
    "make_encoders",
    "make_text_encoder",
]


def make_encoders(settings: Settings) -> Encoders:
    """The image encoder, text encoder and bridge of ``settings.models.pack``.

    ``"lite"`` (the default, offline): EfficientNet-Lite2 (or the faster Lite0, see
    ``settings.models.image``), MiniLM (ONNX Runtime) and the ConSE
    bridge. ``"clip:<name>"`` is delegated to ``tastegraph.models.clip.make_encoders``, where a
    joint image-text model needs no bridge of this kind. Exports are written once to
    ``<data_dir>/models``.
    """
    pack = settings.models.pack.strip()
    if pack.startswith("clip:"):
        try:
            clip = importlib.import_module("tastegraph.models.clip")
        except ImportError as exc:
            raise ModelUnavailable(
                f"model pack {pack!r} is not available in this installation",
                hint="pip install 'tastegraph[clip]', or use model_pack = 'lite'",
            ) from exc
        factory = getattr(clip, "make_encoders", None)
        if factory is None:
            raise ModelUnavailable(f"model pack {pack!r} has no encoder factory")
        encoders: Encoders = factory(settings)
        return encoders
    # Imported here so this package imports (and the text side works) without the image model.
    from tastegraph.models.image import make_image_encoder

    image = make_image_encoder(settings)  # rejects unknown packs with a list of known ones
    text = make_text_encoder(settings)
    return Encoders(image=image, text=text, bridge=make_bridge(settings, text))
