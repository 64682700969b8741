"""Geometry: the model input's shape and crop, and user-chosen crop boxes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tastegraph.errors import InvalidInput
from tastegraph.imaging.rgb import to_rgb

__all__ = ["MIN_CROP_SIDE", "crop", "model_input", "model_input_shape", "wide_side"]

MIN_CROP_SIDE = 16  # in original pixels: smaller crops carry too little to search with


def wide_side(size: int, max_aspect: float) -> int:
    """Longer side of the wide model input: ``size * max_aspect`` rounded to a multiple of 32.

    Multiples of 32 keep every stride-2 layer of the network on even sizes, so the same padding
    (and the same exported weights) serve the square and the wide inputs.
    """
    return max(size, round(size * max_aspect / 32.0) * 32)


def model_input_shape(
    width: int, height: int, size: int, max_aspect: float = 1.0
) -> tuple[int, int]:
    """(rows, columns) of the model input for a ``width`` x ``height`` picture.

    A square ``size`` x ``size``, unless ``max_aspect`` allows a wider input and the picture is
    at least halfway between square and that aspect: then ``size`` by :func:`wide_side`, in the
    picture's orientation. Only these three shapes exist, so encoder batches stay large.
    """
    long = wide_side(size, max_aspect)
    if long == size or width < 1 or height < 1:
        return size, size
    ratio = max(width, height) / min(width, height)
    if ratio < (1.0 + long / size) / 2.0:
        return size, size
    return (size, long) if width >= height else (long, size)


def model_input(
    image: Image.Image, size: int, crop_fraction: float = 1.0, max_aspect: float = 1.0
) -> NDArray[np.uint8]:
    """Central crop resized to the model input (bicubic), as uint8 (rows, columns, 3).

    The crop has the aspect of :func:`model_input_shape`: a square of ``size`` by default; with
    ``max_aspect`` > 1, photos that are clearly landscape or portrait keep more of their frame
    (``size`` x ``wide_side``), because captions and word queries describe the whole scene.

    The image model's input: ``tastegraph.models.preprocess.preprocess_image`` checks its
    argument and calls this. It lives here, free of the model code (and torch), so that decode
    worker processes start in a fraction of the time. ``image`` is expected in RGB, as
    :func:`~tastegraph.imaging.decode.decode_image` returns it; other modes are converted as it
    would. Equivalent to "resize the shorter side to ``size / crop_fraction``, then centre-crop",
    done as one resampling of the crop box so large photos are never resized whole;
    ``reducing_gap`` is a cheap box pre-shrink whose error stays below 1 grey level.
    """
    img = image if image.mode == "RGB" else to_rgb(image)
    w, h = img.size
    if w < 1 or h < 1:
        raise InvalidInput("image has no pixels")
    rows, cols = model_input_shape(w, h, size, max_aspect)
    # The largest box of the output's aspect that fits, shrunk by crop_fraction.
    scale = min(w / cols, h / rows) * crop_fraction
    bw, bh = cols * scale, rows * scale
    left, top = (w - bw) / 2.0, (h - bh) / 2.0
    out = img.resize(
        (cols, rows),
        Image.Resampling.BICUBIC,
        box=(left, top, left + bw, top + bh),
        reducing_gap=3.0,
    )
    return np.asarray(out, dtype=np.uint8)


def crop(
    image: Image.Image,
    box: Sequence[float],
    original_size: tuple[int, int],
    *,
    min_side: int = MIN_CROP_SIDE,
) -> Image.Image:
    """Crop ``box`` = (x0, y0, x1, y1), given in original pixels, out of a possibly reduced image.

    ``original_size`` is the (width, height) the box refers to (``DecodedImage.width/height``);
    the box is scaled to the decoded image, so crops of drafted images land on the same spot.
    Coordinates up to one pixel outside the image are clamped (rounding in clients); anything
    else outside, an empty or inverted box, or a side under ``min_side`` raises ``InvalidInput``.
    """
    ow, oh = int(original_size[0]), int(original_size[1])
    if ow < 1 or oh < 1:
        raise InvalidInput(f"Original size must be positive, not {ow}x{oh}.")
    if len(box) != 4:
        raise InvalidInput("A crop box needs four numbers: x0, y0, x1, y1.")
    coords: list[float] = []
    for value in box:
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise InvalidInput(f"Crop box values must be numbers, not {value!r}.")
        if not math.isfinite(float(value)):
            raise InvalidInput(f"Crop box values must be finite, not {value!r}.")
        coords.append(float(value))
    x0, y0, x1, y1 = coords
    hint = f"Give x0 < x1 and y0 < y1 within the {ow}x{oh} image, in original pixels."
    if x0 < -1 or y0 < -1 or x1 > ow + 1 or y1 > oh + 1:
        raise InvalidInput(f"Crop box {tuple(box)} lies outside the {ow}x{oh} image.", hint=hint)
    x0, y0 = max(x0, 0.0), max(y0, 0.0)
    x1, y1 = min(x1, float(ow)), min(y1, float(oh))
    if x1 <= x0 or y1 <= y0:
        raise InvalidInput(f"Crop box {tuple(box)} is empty or inverted.", hint=hint)
    if x1 - x0 < min_side or y1 - y0 < min_side:
        raise InvalidInput(
            f"Crop box {tuple(box)} is smaller than {min_side}x{min_side} pixels.",
            hint=f"Select a region at least {min_side} pixels wide and high.",
        )
    sx, sy = image.width / ow, image.height / oh
    left = min(max(math.floor(x0 * sx), 0), image.width - 1)
    top = min(max(math.floor(y0 * sy), 0), image.height - 1)
    right = max(min(math.ceil(x1 * sx), image.width), left + 1)
    bottom = max(min(math.ceil(y1 * sy), image.height), top + 1)
    return image.crop((left, top, right, bottom))
