"""Decoding untrusted image bytes safely, with every outcome defined.

Every failure is an :class:`~tastegraph.errors.ImageRejected` whose ``reason`` is one of
:data:`~tastegraph.imaging.limits.REJECT_REASONS`; everything else comes back as a
:class:`DecodedImage` holding an 8-bit RGB ``PIL.Image`` (EXIF orientation applied, alpha
composited on white, first frame of animations).

Nothing here changes Pillow's global state (``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``),
so decoding is safe from several threads at once. Two warning filters are added (appended, so
any filter already set wins), because every outcome here is already worded (an accepted image,
or a rejection saying why) and a raw library warning printed above it only confuses: Pillow's
``DecompressionBombWarning`` (the pixel limit checked right after the header rejects those
files), and the ``UserWarning`` messages its format plugins print about damaged metadata
("Corrupt EXIF data", "Tag data larger than file"), which is skipped. A filter that turns
warnings into errors still wins: the bomb warning is then classified like Pillow's
``DecompressionBombError``, the others as damaged files.

Example
-------
>>> from tastegraph.imaging.limits import ImageLimits                  # doctest: +SKIP
>>> from tastegraph.imaging.read import read_source_bytes              # doctest: +SKIP
>>> from tastegraph.imaging.thumbnails import make_thumbnail           # doctest: +SKIP
>>> limits = ImageLimits(max_bytes=40 << 20, max_pixels=60_000_000)   # doctest: +SKIP
>>> data = read_source_bytes("shoe.jpg", limits, timeout=10.0, allow_url=False)  # doctest: +SKIP
>>> dec = decode_image(data, limits, draft_to=256)                     # doctest: +SKIP
>>> thumb = make_thumbnail(dec.image, 256)                              # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from dataclasses import dataclass

from PIL import Image

from tastegraph.errors import ImageRejected, InvalidInput
from tastegraph.imaging.limits import (
    OPEN_FORMATS,
    ImageLimits,
    too_large_bytes,
    too_many_pixels,
)
from tastegraph.imaging.rgb import to_rgb
from tastegraph.imaging.sniff import classify_failure, not_an_image

__all__ = ["DecodedImage", "decode_image"]

# (category, module regex) of the Pillow warnings that are silenced; see the module docstring.
_QUIET_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (Image.DecompressionBombWarning, ""),
    (UserWarning, r"PIL\."),
)


# Pillow's plugins also *log* errors about damaged files ("More samples per pixel than can be
# decoded"); with no handler configured, Python's last-resort handler printed them raw on the
# terminal. A NullHandler on Pillow's logger (the standard fix for a library's logger) stops
# that, while an application that configures logging (the server) still receives them.
logging.getLogger("PIL").addHandler(logging.NullHandler())


def _quiet_pillow_warnings() -> None:
    """Add the filters unless present. Checked on every decode, not only at import: code that
    imported this module inside ``warnings.catch_warnings()`` (pytest does) lost them on exit.
    Appended, not prepended: an "error" filter someone set (-W error, tests) keeps precedence.
    """
    current = warnings.filters
    for category, module in _QUIET_WARNINGS:
        pattern = re.compile(module) if module else None
        if ("ignore", None, category, pattern, 0) not in current:
            warnings.filterwarnings("ignore", category=category, module=module, append=True)


@dataclass
class DecodedImage:
    """An accepted image: 8-bit RGB pixels plus what was learnt about the original file."""

    image: Image.Image  # mode "RGB", EXIF orientation applied, possibly reduced by draft mode
    width: int  # original width, after EXIF rotation
    height: int  # original height, after EXIF rotation
    format: str  # "JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF" (or "AVIF")
    frames: int  # frames in the file; only the first is decoded
    scale: float  # decoded size / original size; < 1 when JPEG draft mode reduced it


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_image(
    data: bytes, limits: ImageLimits, *, draft_to: int | None = None, source: str = ""
) -> DecodedImage:
    """Decode untrusted image bytes to 8-bit RGB, or raise ``ImageRejected`` saying why not.

    Parameters
    ----------
    data
        The whole file.
    limits
        Largest accepted size in bytes and in pixels; the pixel count is read from the header
        and checked before any pixel data is decoded.
    draft_to
        For JPEG, let the decoder scale down by 1/2, 1/4 or 1/8 (DCT scaling, about twice as
        fast and far less memory) while keeping the shorter side at least ``draft_to`` pixels.
        Other formats are always decoded at full size.
    source
        Where the bytes came from; recorded in the error details only.

    Returns
    -------
    DecodedImage
        ``image`` is RGB with EXIF orientation applied; ``width``/``height`` are the original
        dimensions (after rotation) and ``scale`` the decoded/original size ratio.
    """
    if draft_to is not None and draft_to < 1:
        raise InvalidInput(f"draft_to must be a positive number of pixels, not {draft_to}.")
    _quiet_pillow_warnings()
    if len(data) > limits.max_bytes:
        raise too_large_bytes(len(data), limits.max_bytes, source)
    if not data:
        raise not_an_image(data, source)

    fmt = ""
    try:
        im = Image.open(io.BytesIO(data), formats=OPEN_FORMATS)
        fmt = "JPEG" if im.format == "MPO" else str(im.format)
        # Image.open only parsed the header: check the declared size before decoding anything.
        width, height = im.size
        if width * height > limits.max_pixels:
            raise too_many_pixels(width * height, f"{width}x{height}", len(data), limits, source)
        frames = _count_frames(im)
        # Draft only when libjpeg can scale by at least 1/2; at 1/1 it only adds overhead.
        if draft_to is not None and fmt == "JPEG" and min(width, height) >= 2 * draft_to:
            im.draft(im.mode, (draft_to, draft_to))
        im.load()
        rgb = to_rgb(im)
    except ImageRejected:
        raise
    except Exception as exc:  # any decoder failure becomes a defined rejection
        raise classify_failure(exc, data, fmt, limits, source) from exc

    orientation = _orientation(im)
    if orientation != 1:
        rgb = _apply_orientation(rgb, orientation)
        # The copied metadata still says "rotate me": drop it so nothing downstream rotates twice.
        rgb.info = {}
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return DecodedImage(
        image=rgb,
        width=width,
        height=height,
        format=fmt,
        frames=frames,
        scale=rgb.width / width,
    )


def _count_frames(im: Image.Image) -> int:
    """Frames in the file; read from headers before decoding, so the first frame stays current."""
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # a damaged later frame does not spoil the first one
        return 1
    finally:
        if im.tell() != 0:
            im.seek(0)


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # damaged EXIF should not cost the picture: ignore the rotation
        return 1
    return value if 1 <= value <= 8 else 1


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image
