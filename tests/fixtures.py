"""Test images generated in code: every function returns the bytes of one file.

No binary files are committed; each fixture is small, deterministic and fast to build.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

RGB = tuple[int, int, int]


def photo_array(width: int = 320, height: int = 240, *, seed: int = 0) -> np.ndarray:
    """A photo-like (height, width, 3) uint8 array: soft colour blobs, a gradient and grain."""
    rng = np.random.default_rng(seed)
    # Blobs: a coarse random grid blown up smoothly, so each seed has its own distinct layout.
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    blobs = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.float32)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    shade = (
        30 * np.sin(x / max(width, 1) * 3.1)[..., None]
        + 20 * np.cos(y / max(height, 1) * 2.3)[..., None]
    )
    arr = blobs * 0.8 + shade + rng.normal(0, 8, (height, width, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


@functools.lru_cache(maxsize=64)  # bytes are immutable: safe to share between tests
def jpeg_bytes(width: int = 320, height: int = 240, *, quality: int = 90, seed: int = 0) -> bytes:
    """A valid baseline RGB JPEG of a photo-like picture."""
    return _save(Image.fromarray(photo_array(width, height, seed=seed)), "JPEG", quality=quality)


def truncated_jpeg(width: int = 320, height: int = 240) -> bytes:
    """The first half of a valid JPEG, as an interrupted download leaves it."""
    data = jpeg_bytes(width, height)
    return data[: len(data) // 2]


@functools.lru_cache(maxsize=64)
def png_bytes(width: int = 320, height: int = 240, *, seed: int = 0) -> bytes:
    """A valid 8-bit RGB PNG."""
    return _save(Image.fromarray(photo_array(width, height, seed=seed)), "PNG")


def truncated_png(width: int = 320, height: int = 240) -> bytes:
    """The first half of a valid PNG."""
    data = png_bytes(width, height)
    return data[: len(data) // 2]


def webp_bytes(width: int = 320, height: int = 240) -> bytes:
    """A valid lossy WebP."""
    return _save(Image.fromarray(photo_array(width, height)), "WEBP", quality=85)


def gif_bytes(width: int = 64, height: int = 48) -> bytes:
    """A single-frame GIF."""
    return _save(Image.fromarray(photo_array(width, height)).convert("P"), "GIF")


def bmp_bytes(width: int = 64, height: int = 48) -> bytes:
    """A 24-bit BMP."""
    return _save(Image.fromarray(photo_array(width, height)), "BMP")


def tiff_bytes(width: int = 64, height: int = 48, *, compression: str | None = None) -> bytes:
    """An RGB TIFF (uncompressed unless ``compression`` names a libtiff codec)."""
    params: dict[str, object] = {"compression": compression} if compression else {}
    return _save(Image.fromarray(photo_array(width, height)), "TIFF", **params)


def solid_jpeg(color: RGB, size: tuple[int, int] = (64, 64), *, mode: str = "RGB") -> bytes:
    """A JPEG of one flat colour (``mode`` "L" for greyscale)."""
    image = Image.new("RGB", size, color)
    return _save(image.convert(mode), "JPEG", quality=95)


def cmyk_jpeg(width: int = 64, height: int = 32) -> bytes:
    """A CMYK JPEG: left half pure red (C0 M100 Y100 K0), right half pure blue (C100 M100 Y0)."""
    image = Image.new("CMYK", (width, height), (0, 255, 255, 0))
    image.paste((255, 255, 0, 0), (width // 2, 0, width, height))
    return _save(image, "JPEG", quality=95)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(
    width: int, height: int, bit_depth: int, colour_type: int, idat: bytes, extra: bytes = b""
) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + extra
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def png16_gray(values: Sequence[int] = (0, 16448, 32768, 65535), height: int = 4) -> bytes:
    """A 16-bit greyscale PNG whose columns hold ``values`` (0..65535)."""
    arr = np.tile(np.asarray(values, dtype=">u2"), (height, 1))
    raw = b"".join(b"\x00" + row.tobytes() for row in arr)
    return _png(arr.shape[1], height, 16, 0, zlib.compress(raw))


def png16_rgb(values: Sequence[int] = (0, 16448, 32768, 65535), height: int = 4) -> bytes:
    """A 16-bit RGB PNG: red channel holds ``values`` by column, green full, blue zero."""
    arr = np.zeros((height, len(values), 3), dtype=">u2")
    arr[:, :, 0] = np.asarray(values)
    arr[:, :, 1] = 65535
    raw = b"".join(b"\x00" + row.tobytes() for row in arr)
    return _png(len(values), height, 16, 2, zlib.compress(raw))


def rgba_png(width: int = 40, height: int = 20) -> bytes:
    """RGBA PNG: left half opaque red, right half fully transparent (black underneath)."""
    arr = np.zeros((height, width, 4), np.uint8)
    arr[:, : width // 2] = (255, 0, 0, 255)
    arr[:, width // 2 :] = (0, 0, 0, 0)
    return _save(Image.fromarray(arr, "RGBA"), "PNG")


def la_png(width: int = 40, height: int = 20) -> bytes:
    """Grey+alpha PNG: left half opaque black, right half fully transparent black."""
    arr = np.zeros((height, width, 2), np.uint8)
    arr[:, : width // 2, 1] = 255
    return _save(Image.fromarray(arr, "LA"), "PNG")


def palette_png_transparent(width: int = 40, height: int = 20) -> bytes:
    """Palette PNG: index 0 (black) transparent on the right half, index 1 green on the left."""
    image = Image.new("P", (width, height), 0)
    image.putpalette([0, 0, 0, 0, 200, 0] + [0, 0, 0] * 254)
    image.paste(1, (0, 0, width // 2, height))
    return _save(image, "PNG", transparency=0)


def one_bit_png(width: int = 32, height: int = 16) -> bytes:
    """A 1-bit PNG: left half black, right half white."""
    image = Image.new("1", (width, height), 1)
    image.paste(0, (0, 0, width // 2, height))
    return _save(image, "PNG")


def gray_png(level: int = 100, size: tuple[int, int] = (32, 16)) -> bytes:
    """An 8-bit greyscale PNG of one grey level."""
    return _save(Image.new("L", size, level), "PNG")


DEFAULT_FRAME_COLOURS: tuple[RGB, ...] = ((255, 0, 0), (0, 255, 0), (0, 0, 255))


def animated_gif(
    colours: Sequence[RGB] = DEFAULT_FRAME_COLOURS, size: tuple[int, int] = (32, 32)
) -> bytes:
    """An animated GIF with one flat frame per colour."""
    frames = [Image.new("RGB", size, c).convert("P") for c in colours]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def animated_webp(
    colours: Sequence[RGB] = DEFAULT_FRAME_COLOURS, size: tuple[int, int] = (32, 32)
) -> bytes:
    """An animated WebP with one flat frame per colour."""
    frames = [Image.new("RGB", size, c) for c in colours]
    return _save(
        frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True
    )


def exif_rotated_jpeg(width: int = 60, height: int = 40, orientation: int = 6) -> bytes:
    """A landscape JPEG stored sideways: its left third is red, the rest blue.

    With orientation 6 a viewer rotates it 90° clockwise, so the red band ends up at the top of
    a portrait picture.
    """
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 3, height))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(image, "JPEG", quality=95, exif=exif.tobytes())


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A few-KB 8-bit greyscale PNG whose header claims ``width`` x ``height`` pixels.

    The IDAT is a real deflate stream of zero rows (only the first 200 of them; the point is the
    header, which must be refused before any of it is inflated).
    """
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(comp.compress(row) for _ in range(200)) + comp.flush()
    return _png(width, height, 8, 0, body)


def iccp_bomb_png() -> bytes:
    """A small valid PNG whose iCCP chunk inflates to 8 MB: a zip bomb in the metadata."""
    profile = zlib.compress(b"\x00" * (8 << 20), 9)
    iccp = _png_chunk(b"iCCP", b"bomb\x00\x00" + profile)
    raw = b"".join(b"\x00" + b"\x80" * 8 for _ in range(8))
    return _png(8, 8, 8, 0, zlib.compress(raw), extra=iccp)


def oversized_jpeg(min_bytes: int) -> bytes:
    """A valid JPEG padded with trailing bytes to at least ``min_bytes`` long."""
    data = jpeg_bytes(64, 48)
    return data + b"\x00" * max(0, min_bytes - len(data))


def random_bytes(n: int = 4096, *, seed: int = 0) -> bytes:
    """Noise that is no file format at all."""
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def html_bytes() -> bytes:
    """An HTML page, as a URL to a product page instead of its image returns."""
    return (
        b"<!DOCTYPE html>\n<html><head><title>Shop</title></head>"
        b"<body><img src=x.jpg></body></html>"
    )


def text_bytes() -> bytes:
    """Plain text."""
    return "name,price\nsummer dress,20 €\n".encode()


def pdf_bytes() -> bytes:
    """A one-page PDF holding a picture (Pillow writes it; it is not an accepted format)."""
    return _save(Image.fromarray(photo_array(64, 48)), "PDF")


def svg_bytes() -> bytes:
    """A small SVG drawing."""
    return (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    )


def ico_bytes() -> bytes:
    """A Windows icon (Pillow decodes it, we do not accept it)."""
    return _save(Image.new("RGB", (32, 32), (10, 20, 30)), "ICO")


def heic_header() -> bytes:
    """The opening of a HEIC file (ISO-BMFF ftyp box, brand heic); no decoder plugin here."""
    ftyp = b"ftypheic\x00\x00\x00\x00mif1heic"
    return struct.pack(">I", len(ftyp) + 4) + ftyp + b"\x00" * 64


def write_images(folder: Path, colours: dict[str, RGB], n: int, seed: int) -> None:
    """``n`` noisy PNG photos of each colour, named ``COLOUR-NN.png``, in a new ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name, rgb in colours.items():
        for i in range(n):
            arr = np.clip(np.array(rgb) + rng.normal(0, 18, (48, 64, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "PNG")
            (folder / f"{name}-{i:02d}.png").write_bytes(buf.getvalue())
