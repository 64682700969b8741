"""Naming what Pillow could not open: sniffing magic numbers, and classifying its failures."""

from __future__ import annotations

import io
import re

from PIL import Image, UnidentifiedImageError

from tastegraph.errors import ImageRejected
from tastegraph.imaging.limits import (
    ACCEPTED_FORMATS,
    OPEN_FORMATS,
    ImageLimits,
    bomb,
    corrupt,
    reject,
    too_many_pixels,
    truncated,
    unsupported,
)

__all__ = [
    "accepted_magic",
    "classify_failure",
    "looks_like_html",
    "looks_like_text",
    "not_an_image",
]


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


def not_an_image(data: bytes, source: str) -> ImageRejected:
    if not data:
        what = "The file is empty (0 bytes)"
    elif looks_like_html(data):
        what = "This is an HTML web page, not an image"
    elif looks_like_text(data):
        what = "This is a text file, not an image"
    else:
        what = "The data is not in any image format we recognise"
    return reject(
        "not_an_image",
        f"{what}.",
        "Point at the image file itself (for a URL, the image address, not the page showing it).",
        source,
    )


def accepted_magic(data: bytes) -> str:
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
    ours = (*OPEN_FORMATS, "MPO")
    others = [f for f, (_, accept) in Image.OPEN.items() if accept and f not in ours]
    try:
        with Image.open(io.BytesIO(data), formats=others) as im:
            return str(im.format or "")
    except Exception:  # anything it cannot parse is simply "not identified"
        return ""


def looks_like_html(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        head.startswith(b"<") and b"<html" in head
    )


def looks_like_text(data: bytes) -> bool:
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


def classify_failure(
    exc: BaseException, data: bytes, fmt: str, limits: ImageLimits, source: str
) -> ImageRejected:
    """Turn whatever Pillow raised while opening or decoding into a defined rejection."""
    fmt = fmt or accepted_magic(data)
    text = str(exc)
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        # Pillow's own guard fired before ours could look at the header (it runs inside open).
        found = _BOMB_MESSAGE.search(text)
        pixels = int(found.group(1)) if found else limits.max_pixels + 1
        return too_many_pixels(pixels, "", len(data), limits, source)
    if isinstance(exc, MemoryError):
        return bomb("decoding needed more memory than is available", source)
    if isinstance(exc, ValueError) and (
        "too large" in text.lower() or "too much memory" in text.lower()
    ):
        return bomb(text, source)
    if "truncat" in text.lower() or (fmt and _is_cut_short(data, fmt)):
        return truncated(fmt, source)
    if isinstance(exc, UnidentifiedImageError):
        if fmt:
            return corrupt(fmt, "its header is not valid", source)
        other = _other_format(data)
        if other:
            return unsupported(other, source)
        return not_an_image(data, source)
    return corrupt(fmt, text or type(exc).__name__, source)
