"""Any decoded Pillow mode to the 8-bit RGB every other step expects."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["deep_to_rgb", "to_rgb"]


def to_rgb(im: Image.Image) -> Image.Image:
    """Any decoded mode -> 8-bit RGB, scaling deep pixels and compositing alpha on white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":
        return deep_to_rgb(im)
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    # CMYK (Pillow already undoes Adobe's inverted CMYK JPEGs), YCbCr, 1, L, P, LAB, HSV.
    return im.convert("RGB")


def deep_to_rgb(im: Image.Image) -> Image.Image:
    """16/32-bit integer or float grey -> 8-bit RGB.

    Pillow's own ``convert`` clips these at 255, turning a 16-bit picture white. 16-bit data
    (every value in 0..65535) is scaled by 255/65535; other integer or float ranges are
    stretched from their minimum to their maximum, floats already in 0..1 are scaled by 255.
    """
    arr = np.asarray(im)
    if arr.ndim == 3:  # multi-channel deep modes: keep the first channel
        arr = arr[..., 0]
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if im.mode == "F" and lo >= 0.0 and hi <= 1.0:
        out = np.asarray(arr, np.float64) * 255.0
    elif im.mode != "F" and lo >= 0 and hi <= 65535:
        out = np.asarray(arr, np.float64) * (255.0 / 65535.0)
    elif hi > lo:
        out = (np.asarray(arr, np.float64) - lo) * (255.0 / (hi - lo))
    else:
        out = np.zeros(arr.shape, np.float64)
    grey = np.clip(np.rint(np.nan_to_num(out)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")
