"""What an accepted image may be, and the worded refusal for each way it is not.

Every failure in :mod:`tastegraph.imaging` is an :class:`~tastegraph.errors.ImageRejected` whose
``reason`` is one of :data:`REJECT_REASONS`, built by one of the functions here so that each says
what happened and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import features

from tastegraph.errors import ImageRejected

if TYPE_CHECKING:
    from tastegraph.settings import Settings

__all__ = [
    "ACCEPTED_FORMATS",
    "OPEN_FORMATS",
    "REJECT_REASONS",
    "ImageLimits",
    "bomb",
    "corrupt",
    "reject",
    "too_large_bytes",
    "too_many_pixels",
    "truncated",
    "unsupported",
]

# The fixed set of ``ImageRejected.reason`` codes that imaging raises.
REJECT_REASONS = (
    "too_large_bytes",
    "too_many_pixels",
    "decompression_bomb",
    "truncated",
    "not_an_image",
    "unsupported_format",
    "corrupt",
    "unreadable_file",
    "unreadable_url",
    "unsupported_url",
    "url_fetch_disabled",
)

# Pillow plugin names we decode. Multi-picture JPEGs from phones open through the JPEG plugin as
# "MPO" and are reported as "JPEG". AVIF only where this Pillow build has the codec.
OPEN_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF") + (
    ("AVIF",) if features.check("avif") else ()
)
ACCEPTED_FORMATS: tuple[str, ...] = OPEN_FORMATS


# A header declaring more pixels per byte of file than this cannot be a real picture of that size
# (deflate tops out near 1032:1 and a real photo needs far more than a bit per pixel): it is
# classed as a decompression bomb rather than an honest, merely too large, image.
_BOMB_PIXELS_PER_BYTE = 1000

_FIX_LIMITS_HINT = "or raise the limit with the TASTEGRAPH_{name} setting"


@dataclass(frozen=True)
class ImageLimits:
    """What an accepted image may be: its size in bytes and in pixels (width x height)."""

    max_bytes: int
    max_pixels: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        """The limits configured in ``settings``."""
        return cls(
            max_bytes=settings.ingest.max_image_bytes, max_pixels=settings.ingest.max_image_pixels
        )


# ---------------------------------------------------------------------------------------------
# Rejections


def reject(reason: str, message: str, hint: str, source: str, **details: object) -> ImageRejected:
    if source:
        details["source"] = source
    return ImageRejected(reason, message, hint=hint, **details)


def too_large_bytes(size: int, limit: int, source: str, *, cut: bool = False) -> ImageRejected:
    # cut: the download was stopped at the limit, so the true size is unknown.
    size_text = f"more than {limit:,}" if cut else f"{size:,}"
    return reject(
        "too_large_bytes",
        f"The image is {size_text} bytes; the limit is {limit:,} bytes.",
        "Re-export it smaller (a JPEG or WebP of at most a few thousand pixels a side), "
        + _FIX_LIMITS_HINT.format(name="MAX_IMAGE_BYTES")
        + ".",
        source,
        size=size,
        limit=limit,
    )


def too_many_pixels(
    pixels: int, dims: str, n_bytes: int, limits: ImageLimits, source: str
) -> ImageRejected:
    """``dims`` is "WxH" when the header was read, "" when only Pillow's pixel count is known."""
    size_text = f"{dims} = {pixels:,}" if dims else f"{pixels:,}"
    if pixels > _BOMB_PIXELS_PER_BYTE * max(n_bytes, 1):
        return reject(
            "decompression_bomb",
            f"The file declares {size_text} pixels in only {n_bytes:,} bytes, which no real "
            "picture can; it looks crafted to exhaust memory and was not decoded.",
            "If the file is genuine, re-export it from the original at a normal size.",
            source,
            pixels=pixels,
        )
    return reject(
        "too_many_pixels",
        f"The image is {size_text} pixels; the limit is {limits.max_pixels:,} pixels.",
        "Downscale it, " + _FIX_LIMITS_HINT.format(name="MAX_IMAGE_PIXELS") + ".",
        source,
        pixels=pixels,
        limit=limits.max_pixels,
    )


def bomb(detail: str, source: str) -> ImageRejected:
    return reject(
        "decompression_bomb",
        f"The file expands to far more data than it holds ({detail}); it was not decoded.",
        "If the file is genuine, re-export it without oversized embedded metadata.",
        source,
    )


def truncated(fmt: str, source: str) -> ImageRejected:
    what = f"{fmt} file" if fmt else "file"
    return reject(
        "truncated",
        f"The {what} is cut short: its image data ends before the picture is complete.",
        "Download or copy the file again; an interrupted transfer usually causes this.",
        source,
    )


def corrupt(fmt: str, detail: str, source: str) -> ImageRejected:
    what = f"{fmt} data" if fmt else "image data"
    return reject(
        "corrupt",
        f"The {what} is damaged and cannot be decoded ({detail}).",
        "Open and re-save the image in an image editor, or use another copy of it.",
        source,
    )


def unsupported(fmt: str, source: str) -> ImageRejected:
    return reject(
        "unsupported_format",
        f"{fmt} files are not supported; accepted formats are {', '.join(ACCEPTED_FORMATS)}.",
        "Convert it to JPEG, PNG or WebP first.",
        source,
        format=fmt,
    )
