"""Decoding untrusted image bytes safely, with every outcome defined.

Every failure is an :class:`~tastegraph.errors.ImageRejected` whose ``reason`` is one of
:data:`REJECT_REASONS`; everything else comes back as a :class:`DecodedImage` holding an 8-bit RGB
``PIL.Image`` (EXIF orientation applied, alpha composited on white, first frame of animations).

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
>>> limits = ImageLimits(max_bytes=40 << 20, max_pixels=60_000_000)   # doctest: +SKIP
>>> data = read_source_bytes("shoe.jpg", limits, timeout=10.0, allow_url=False)  # doctest: +SKIP
>>> dec = decode_image(data, limits, draft_to=256)                     # doctest: +SKIP
>>> thumb = make_thumbnail(dec.image, 256)                              # doctest: +SKIP
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import math
import os
import re
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError, features

from tastegraph.errors import ImageRejected, InvalidInput

if TYPE_CHECKING:
    from tastegraph.settings import Settings

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


# httpx and imagehash are imported where they are used: ingest's decode worker processes import
# this module and need neither (each would cost every worker ~0.1-0.2 s of start-up).

__all__ = [
    "ACCEPTED_FORMATS",
    "MIN_CROP_SIDE",
    "REJECT_REASONS",
    "DecodedImage",
    "ImageLimits",
    "content_hash",
    "crop",
    "decode_image",
    "hamming",
    "make_thumbnail",
    "model_input",
    "model_input_shape",
    "perceptual_hash",
    "quick_perceptual_hash",
    "quick_thumbnail",
    "quick_thumbnail_and_phash",
    "read_source_bytes",
    "wide_side",
]

# The fixed set of ``ImageRejected.reason`` codes this module raises.
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
_OPEN_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF") + (
    ("AVIF",) if features.check("avif") else ()
)
ACCEPTED_FORMATS: tuple[str, ...] = _OPEN_FORMATS

MIN_CROP_SIDE = 16  # in original pixels: smaller crops carry too little to search with

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
# Rejections


def _reject(reason: str, message: str, hint: str, source: str, **details: object) -> ImageRejected:
    if source:
        details["source"] = source
    return ImageRejected(reason, message, hint=hint, **details)


def _too_large_bytes(size: int, limit: int, source: str, *, cut: bool = False) -> ImageRejected:
    # cut: the download was stopped at the limit, so the true size is unknown.
    size_text = f"more than {limit:,}" if cut else f"{size:,}"
    return _reject(
        "too_large_bytes",
        f"The image is {size_text} bytes; the limit is {limit:,} bytes.",
        "Re-export it smaller (a JPEG or WebP of at most a few thousand pixels a side), "
        + _FIX_LIMITS_HINT.format(name="MAX_IMAGE_BYTES")
        + ".",
        source,
        size=size,
        limit=limit,
    )


def _too_many_pixels(
    pixels: int, dims: str, n_bytes: int, limits: ImageLimits, source: str
) -> ImageRejected:
    """``dims`` is "WxH" when the header was read, "" when only Pillow's pixel count is known."""
    size_text = f"{dims} = {pixels:,}" if dims else f"{pixels:,}"
    if pixels > _BOMB_PIXELS_PER_BYTE * max(n_bytes, 1):
        return _reject(
            "decompression_bomb",
            f"The file declares {size_text} pixels in only {n_bytes:,} bytes, which no real "
            "picture can; it looks crafted to exhaust memory and was not decoded.",
            "If the file is genuine, re-export it from the original at a normal size.",
            source,
            pixels=pixels,
        )
    return _reject(
        "too_many_pixels",
        f"The image is {size_text} pixels; the limit is {limits.max_pixels:,} pixels.",
        "Downscale it, " + _FIX_LIMITS_HINT.format(name="MAX_IMAGE_PIXELS") + ".",
        source,
        pixels=pixels,
        limit=limits.max_pixels,
    )


def _bomb(detail: str, source: str) -> ImageRejected:
    return _reject(
        "decompression_bomb",
        f"The file expands to far more data than it holds ({detail}); it was not decoded.",
        "If the file is genuine, re-export it without oversized embedded metadata.",
        source,
    )


def _truncated(fmt: str, source: str) -> ImageRejected:
    what = f"{fmt} file" if fmt else "file"
    return _reject(
        "truncated",
        f"The {what} is cut short: its image data ends before the picture is complete.",
        "Download or copy the file again; an interrupted transfer usually causes this.",
        source,
    )


def _corrupt(fmt: str, detail: str, source: str) -> ImageRejected:
    what = f"{fmt} data" if fmt else "image data"
    return _reject(
        "corrupt",
        f"The {what} is damaged and cannot be decoded ({detail}).",
        "Open and re-save the image in an image editor, or use another copy of it.",
        source,
    )


def _unsupported(fmt: str, source: str) -> ImageRejected:
    return _reject(
        "unsupported_format",
        f"{fmt} files are not supported; accepted formats are {', '.join(ACCEPTED_FORMATS)}.",
        "Convert it to JPEG, PNG or WebP first.",
        source,
        format=fmt,
    )


def _not_an_image(data: bytes, source: str) -> ImageRejected:
    if not data:
        what = "The file is empty (0 bytes)"
    elif _looks_like_html(data):
        what = "This is an HTML web page, not an image"
    elif _looks_like_text(data):
        what = "This is a text file, not an image"
    else:
        what = "The data is not in any image format we recognise"
    return _reject(
        "not_an_image",
        f"{what}.",
        "Point at the image file itself (for a URL, the image address, not the page showing it).",
        source,
    )


# ---------------------------------------------------------------------------------------------
# Sniffing, for failures Pillow only reports as "cannot identify image file"

_ACCEPTED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)

_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "PDF"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\xff\x0a", "JPEG XL"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"icns", "ICNS"),
    (b"gimp xcf", "XCF"),
)

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}


def _accepted_magic(data: bytes) -> str:
    for magic, fmt in _ACCEPTED_MAGIC:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis") and "AVIF" in ACCEPTED_FORMATS:
        return "AVIF"
    return ""


def _other_format(data: bytes) -> str:
    for magic, fmt in _OTHER_MAGIC:
        if data.startswith(magic):
            return fmt
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _HEIF_BRANDS:
            return "HEIC/HEIF"
        if brand in (b"avif", b"avis"):
            return "AVIF"
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "SVG"
    return _pillow_other_format(data)


def _pillow_other_format(data: bytes) -> str:
    """The name of a format Pillow can identify by its magic number but that we do not accept."""
    Image.init()
    # Plugins without a magic-number check (TGA, ...) would "identify" random bytes; skip them.
    ours = (*_OPEN_FORMATS, "MPO")
    others = [f for f, (_, accept) in Image.OPEN.items() if accept and f not in ours]
    try:
        with Image.open(io.BytesIO(data), formats=others) as im:
            return str(im.format or "")
    except Exception:  # anything it cannot parse is simply "not identified"
        return ""


def _looks_like_html(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        head.startswith(b"<") and b"<html" in head
    )


def _looks_like_text(data: bytes) -> bool:
    head = data[:4096]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the 4096-byte boundary is still text.
        return exc.start >= len(head) - 3
    return True


def _is_cut_short(data: bytes, fmt: str) -> bool:
    """Whether a file of a format we accept lacks its end marker, i.e. was cut short."""
    if fmt == "JPEG":
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if fmt == "PNG":
        return b"IEND" not in data[-64:]
    if fmt == "GIF":
        return not data.rstrip(b"\x00").endswith(b";")
    if fmt == "WEBP" and len(data) >= 8:
        # RIFF header: the chunk size counts every byte after the first 8.
        return len(data) < 8 + int.from_bytes(data[4:8], "little")
    return False


_BOMB_MESSAGE = re.compile(r"\((\d+) pixels\)")


def _classify_failure(
    exc: BaseException, data: bytes, fmt: str, limits: ImageLimits, source: str
) -> ImageRejected:
    """Turn whatever Pillow raised while opening or decoding into a defined rejection."""
    fmt = fmt or _accepted_magic(data)
    text = str(exc)
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        # Pillow's own guard fired before ours could look at the header (it runs inside open).
        found = _BOMB_MESSAGE.search(text)
        pixels = int(found.group(1)) if found else limits.max_pixels + 1
        return _too_many_pixels(pixels, "", len(data), limits, source)
    if isinstance(exc, MemoryError):
        return _bomb("decoding needed more memory than is available", source)
    if isinstance(exc, ValueError) and (
        "too large" in text.lower() or "too much memory" in text.lower()
    ):
        return _bomb(text, source)
    if "truncat" in text.lower() or (fmt and _is_cut_short(data, fmt)):
        return _truncated(fmt, source)
    if isinstance(exc, UnidentifiedImageError):
        if fmt:
            return _corrupt(fmt, "its header is not valid", source)
        other = _other_format(data)
        if other:
            return _unsupported(other, source)
        return _not_an_image(data, source)
    return _corrupt(fmt, text or type(exc).__name__, source)


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
        raise _too_large_bytes(len(data), limits.max_bytes, source)
    if not data:
        raise _not_an_image(data, source)

    fmt = ""
    try:
        im = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
        fmt = "JPEG" if im.format == "MPO" else str(im.format)
        # Image.open only parsed the header: check the declared size before decoding anything.
        width, height = im.size
        if width * height > limits.max_pixels:
            raise _too_many_pixels(width * height, f"{width}x{height}", len(data), limits, source)
        frames = _count_frames(im)
        # Draft only when libjpeg can scale by at least 1/2; at 1/1 it only adds overhead.
        if draft_to is not None and fmt == "JPEG" and min(width, height) >= 2 * draft_to:
            im.draft(im.mode, (draft_to, draft_to))
        im.load()
        rgb = _to_rgb(im)
    except ImageRejected:
        raise
    except Exception as exc:  # any decoder failure becomes a defined rejection
        raise _classify_failure(exc, data, fmt, limits, source) from exc

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


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any decoded mode -> 8-bit RGB, scaling deep pixels and compositing alpha on white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":
        return _deep_to_rgb(im)
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    # CMYK (Pillow already undoes Adobe's inverted CMYK JPEGs), YCbCr, 1, L, P, LAB, HSV.
    return im.convert("RGB")


def _deep_to_rgb(im: Image.Image) -> Image.Image:
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


# ---------------------------------------------------------------------------------------------
# Derived data


def make_thumbnail(image: Image.Image, size: int, *, fmt: str = "WEBP", quality: int = 80) -> bytes:
    """Encode a thumbnail whose longest side is ``size`` (never enlarged), keeping the aspect.

    ``fmt`` is "WEBP" (default) or "JPEG".
    """
    return encode_thumbnail(thumbnail_image(image, size), fmt=fmt, quality=quality)


def thumbnail_image(image: Image.Image, size: int) -> Image.Image:
    """An RGB copy whose longest side is ``size`` (never enlarged), keeping the aspect."""
    if size < 1:
        raise InvalidInput(f"Thumbnail size must be a positive number of pixels, not {size}.")
    thumb = image if image.mode == "RGB" else _to_rgb(image)
    thumb = thumb.copy()
    # Pillow's bicubic is antialiased when shrinking; Lanczos looked no better at this size and
    # took 3x as long. reducing_gap: a cheap box reduction first for large inputs.
    thumb.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return thumb


def encode_thumbnail(thumb: Image.Image, *, fmt: str = "WEBP", quality: int = 80) -> bytes:
    """Encode a thumbnail image as WEBP or JPEG bytes."""
    fmt = fmt.upper()
    if fmt not in ("WEBP", "JPEG"):
        raise InvalidInput(f"Thumbnail format must be WEBP or JPEG, not {fmt}.")
    out = io.BytesIO()
    if fmt == "WEBP":
        # method 2: 4x faster than the default 4 for files about 3% larger.
        thumb.save(out, "WEBP", quality=quality, method=2)
    else:
        # Baseline JPEG: the optimised-Huffman and progressive passes cost more than they save
        # on a 256-pixel thumbnail.
        thumb.save(out, "JPEG", quality=quality)
    return out.getvalue()


def content_hash(data: bytes) -> str:
    """SHA-256 of the file's bytes, as 64 hex digits."""
    return hashlib.sha256(data).hexdigest()


def perceptual_hash(image: Image.Image) -> str:
    """64-bit DCT perceptual hash (imagehash.phash) as 16 hex digits."""
    import imagehash

    return str(imagehash.phash(image, hash_size=8))


# Ingest's cheaper variants. Measured on the clothing photos (400x533 JPEGs, 2-core box): the
# thumbnail and pHash cost more than the JPEG decode itself, which made the decode workers, not the
# model, the slower half of an ingest.


def quick_thumbnail(image: Image.Image, size: int) -> Image.Image:
    """:func:`thumbnail_image` for ingest: the same output size at a fraction of the cost.

    Pillow's antialiased resampling costs about 10 ns per output pixel and pass even where the
    scale is close to 1, so a large image is first shrunk by the largest integer box reduction
    that stays at or above the target (each pixel the mean of a k x k block: cheap and exact
    antialiasing). When that already lands within 10% of the target, nearest-neighbour sampling
    finishes the job, skipping at most every tenth row and column of the box-filtered image;
    otherwise a bilinear resample does. On the clothing photos (400x533 -> 2x2 box -> 192x256)
    this is 0.9 ms instead of 3.9 ms for :func:`thumbnail_image`, about as sharp as a Lanczos
    thumbnail (mean gradient 14.3 vs 14.6; bicubic 13.4) and within 31 dB PSNR of it (pixels move
    by up to half a pixel), which is not visible at thumbnail size. ``image`` must be RGB. No copy
    is made: an image already small enough is returned itself, so callers must not modify the
    result in place.
    """
    return quick_thumbnail_and_phash(image, size, phash=False)[0]


def quick_thumbnail_and_phash(
    image: Image.Image, size: int, *, phash: bool = True
) -> tuple[Image.Image, str]:
    """:func:`quick_thumbnail` and :func:`quick_perceptual_hash` from one box reduction.

    The hash is taken from the box-reduced image rather than from the thumbnail: nearest-neighbour
    sampling moves pixels enough to flip a bit or two of a pHash. On the clothing photos it is
    within 0-4 bits (mean 0.5) of :func:`perceptual_hash` of :func:`thumbnail_image`. ``""``
    when ``phash`` is False.
    """
    if size < 1:
        raise InvalidInput(f"Thumbnail size must be a positive number of pixels, not {size}.")
    target = _thumbnail_size(image.size, size)
    reduced = image
    if target is not None:
        factor = min(image.width // target[0], image.height // target[1])
        if factor >= 2:
            reduced = image.reduce(factor)
    digest = quick_perceptual_hash(reduced) if phash else ""
    if target is None or reduced.size == target:
        return reduced, digest
    if (
        reduced is not image
        and target[0] >= 0.9 * reduced.width
        and target[1] >= 0.9 * reduced.height
    ):
        return reduced.resize(target, Image.Resampling.NEAREST), digest
    return reduced.resize(target, Image.Resampling.BILINEAR), digest


def _thumbnail_size(current: tuple[int, int], size: int) -> tuple[int, int] | None:
    """The size ``Image.thumbnail((size, size))`` gives (its aspect rounding); None: no change."""
    width, height = current
    if size >= width and size >= height:
        return None
    aspect = width / height
    x = y = size
    if x / y >= aspect:
        x = max(
            min(math.floor(y * aspect), math.ceil(y * aspect), key=lambda n: abs(aspect - n / y)), 1
        )
    else:
        y = max(
            min(
                math.floor(x / aspect),
                math.ceil(x / aspect),
                key=lambda n: 0 if n == 0 else abs(aspect - x / n),
            ),
            1,
        )
    return x, y


# DCT-II rows 0..7 of a 32-point transform, unnormalised as scipy.fftpack.dct computes it.
_DCT_8x32 = 2.0 * np.cos(np.pi * np.arange(8)[:, None] * (2 * np.arange(32)[None, :] + 1) / 64.0)


def quick_perceptual_hash(image: Image.Image) -> str:
    """:func:`perceptual_hash`'s algorithm at about half the cost, for ingest.

    Same steps as ``imagehash.phash`` (greyscale, 32x32 Lanczos, 2-D DCT-II, the 8x8 lowest
    frequencies compared with their median, 16 hex digits), with two shortcuts: a box pre-shrink
    before the Lanczos resize (``reducing_gap=2``) and the DCT as two small matrix products over
    the 8 rows used. Without the pre-shrink it gives exactly :func:`perceptual_hash`'s bits; with
    it, hashes of the same picture differ by 0-2 bits (mean 0.3 on the clothing photos; unrelated
    photos are ~31 bits apart), well inside the near-duplicate threshold (6 by default).
    """
    grey = image.convert("L").resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=2.0)
    low = _DCT_8x32 @ np.asarray(grey, dtype=np.float64) @ _DCT_8x32.T
    bits = (low > np.median(low)).ravel()
    return np.packbits(bits).tobytes().hex()


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

    The image model's input: ``tastegraph.models.image.preprocess_image`` checks its argument and
    calls this. It lives here, free of the model code (and torch), so that decode worker
    processes start in a fraction of the time. ``image`` is expected in RGB, as
    :func:`decode_image` returns it; other modes are converted as :func:`decode_image` would.
    Equivalent to "resize the shorter side to ``size / crop_fraction``, then centre-crop", done
    as one resampling of the crop box so large photos are never resized whole;
    ``reducing_gap`` is a cheap box pre-shrink whose error stays below 1 grey level.
    """
    img = image if image.mode == "RGB" else _to_rgb(image)
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


def hamming(a_hex: str, b_hex: str) -> int:
    """Number of differing bits between two hex hashes of equal length."""
    if len(a_hex) != len(b_hex):
        raise InvalidInput(
            f"Cannot compare hashes of different lengths ({len(a_hex)} and {len(b_hex)} digits)."
        )
    try:
        return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()
    except ValueError as exc:
        raise InvalidInput("A perceptual hash must be hexadecimal digits.") from exc


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


# ---------------------------------------------------------------------------------------------
# Reading bytes from a path or URL

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def read_source_bytes(
    ref: str,
    limits: ImageLimits,
    *,
    timeout: float,
    allow_url: bool,
    allow_private_hosts: bool = True,
    allow_local_files: bool = True,
) -> bytes:
    """The bytes of a local file or an http(s) URL, never more than ``limits.max_bytes``.

    Any scheme other than http/https is refused. Redirects are followed by hand (at most 5),
    each target checked the same way. ``timeout`` bounds each network step and the whole
    download. ``allow_private_hosts=False`` refuses hosts that resolve to loopback, private,
    link-local or reserved addresses (server-side request forgery) and connects to the very
    address it checked, on each hop (see :mod:`tastegraph.catalog.fetch`). Callers passing
    refs from untrusted users (the HTTP API) must set
    ``allow_local_files=False``, else a ref like ``/etc/passwd`` is read from the server's disk.
    """
    scheme = _SCHEME.match(ref)
    # "C:\\x" style drive letters are paths, not one-letter schemes.
    if scheme and len(scheme.group(1)) > 1:
        name = scheme.group(1).lower()
        if name not in ("http", "https"):
            raise _reject(
                "unsupported_url",
                f"Only http and https URLs can be fetched, not {name}: URLs.",
                "Give an http(s) URL or a local file path.",
                ref,
            )
        if not allow_url:
            raise _reject(
                "url_fetch_disabled",
                "Fetching images by URL is turned off on this server.",
                "Upload the image file instead, or enable the TASTEGRAPH_ALLOW_URL_FETCH setting.",
                ref,
            )
        from tastegraph.catalog.fetch import fetch_url

        return fetch_url(ref, limits, timeout, allow_private_hosts)
    if not allow_local_files:
        raise _reject(
            "unsupported_url",
            "Only http and https URLs are accepted here, not local file paths.",
            "Give an http(s) URL, or upload the file.",
            ref,
        )
    return _read_file(ref, limits)


def _read_file(ref: str, limits: ImageLimits) -> bytes:
    path = Path(ref)

    def unreadable(why: str) -> ImageRejected:
        return _reject(
            "unreadable_file",
            f"Cannot read {ref}: {why}.",
            "Check the path (relative paths in a manifest are relative to the manifest's folder) "
            "and the file's permissions.",
            ref,
        )

    try:
        # One stat instead of three, read as Path.exists() and Path.is_file() would read it.
        try:
            st = os.stat(path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
                raise unreadable("no such file") from exc
            raise
        except ValueError as exc:  # a path Python cannot pass to the OS (a NUL in it)
            raise unreadable("no such file") from exc
        if not stat.S_ISREG(st.st_mode):  # directories, FIFOs, devices: reading could block
            raise unreadable("not a regular file")
        size = st.st_size
        if size > limits.max_bytes:
            raise _too_large_bytes(size, limits.max_bytes, ref)
        with path.open("rb") as fh:
            # Ask for the size stat gave (plus one byte, to notice a file that grew since):
            # read(max_bytes + 1) allocates a 40 MB buffer per file (32 us instead of 10 us for
            # a 28 KB photo). A file that did grow is read on, up to the limit.
            data = fh.read(size + 1)
            if len(data) > size:
                data += fh.read(limits.max_bytes + 1 - len(data))
    except ImageRejected:
        raise
    except OSError as exc:
        raise unreadable(exc.strerror or str(exc)) from exc
    if len(data) > limits.max_bytes:
        raise _too_large_bytes(len(data), limits.max_bytes, ref)
    return data
