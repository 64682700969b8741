"""Decoding untrusted image bytes: every accepted format, conversion and rejection reason."""

from __future__ import annotations

import io
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps, features

from tastegraph.errors import ImageRejected, InvalidInput
from tastegraph.imaging.decode import DecodedImage, decode_image
from tastegraph.imaging.geometry import crop
from tastegraph.imaging.hashes import content_hash, hamming, perceptual_hash
from tastegraph.imaging.limits import ACCEPTED_FORMATS, REJECT_REASONS, ImageLimits
from tastegraph.imaging.read import read_source_bytes
from tastegraph.imaging.thumbnails import make_thumbnail
from tastegraph.settings import get_settings
from tests import fixtures as fx

LIMITS = ImageLimits(max_bytes=40 << 20, max_pixels=60_000_000)


def decode(data: bytes, limits: ImageLimits = LIMITS, **kw: object) -> DecodedImage:
    return decode_image(data, limits, **kw)  # type: ignore[arg-type]


def rejected(data: bytes, limits: ImageLimits = LIMITS, **kw: object) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, limits, **kw)  # type: ignore[arg-type]
    err = info.value
    assert err.reason in REJECT_REASONS
    assert err.message and err.hint  # every rejection says what happened and what to do
    assert err.to_dict()["details"]["reason"] == err.reason
    return err


def pixel(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(image)[y, x])


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(p - q) <= tol for p, q in zip(a, b, strict=True))


# ---------------------------------------------------------------------------------------------
# Limits


def test_limits_from_settings() -> None:
    s = get_settings(max_image_bytes=123_456, max_image_pixels=789)
    assert ImageLimits.from_settings(s) == ImageLimits(max_bytes=123_456, max_pixels=789)


# ---------------------------------------------------------------------------------------------
# Accepted formats


@pytest.mark.parametrize(
    ("make", "fmt", "size"),
    [
        (lambda: fx.jpeg_bytes(320, 240), "JPEG", (320, 240)),
        (lambda: fx.png_bytes(320, 240), "PNG", (320, 240)),
        (lambda: fx.webp_bytes(320, 240), "WEBP", (320, 240)),
        (lambda: fx.gif_bytes(64, 48), "GIF", (64, 48)),
        (lambda: fx.bmp_bytes(64, 48), "BMP", (64, 48)),
        (lambda: fx.tiff_bytes(64, 48), "TIFF", (64, 48)),
        (lambda: fx.tiff_bytes(64, 48, compression="tiff_deflate"), "TIFF", (64, 48)),
    ],
)
def test_accepted_formats_decode_to_rgb(make: object, fmt: str, size: tuple[int, int]) -> None:
    dec = decode(make())  # type: ignore[operator]
    assert dec.format == fmt and fmt in ACCEPTED_FORMATS
    assert dec.image.mode == "RGB"
    assert dec.image.size == size == (dec.width, dec.height)
    assert dec.frames == 1
    assert dec.scale == 1.0


def test_decoded_pixels_match_the_source() -> None:
    arr = fx.photo_array(64, 48)
    dec = decode(fx.png_bytes(64, 48))
    assert np.array_equal(np.asarray(dec.image), arr)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF codec")
def test_avif_where_pillow_has_the_codec() -> None:
    out = io.BytesIO()
    Image.fromarray(fx.photo_array(64, 48)).save(out, "AVIF", quality=80)
    dec = decode(out.getvalue())
    assert dec.format == "AVIF" and dec.image.size == (64, 48)


def test_grayscale_and_one_bit_become_rgb() -> None:
    grey = decode(fx.gray_png(100))
    assert grey.image.mode == "RGB" and pixel(grey.image, 3, 3) == (100, 100, 100)
    one = decode(fx.one_bit_png(32, 16))
    assert pixel(one.image, 2, 2) == (0, 0, 0)
    assert pixel(one.image, 30, 2) == (255, 255, 255)
    gj = decode(fx.solid_jpeg((90, 90, 90), mode="L"))
    assert gj.image.mode == "RGB" and close(pixel(gj.image, 5, 5), (90, 90, 90), 3)


# ---------------------------------------------------------------------------------------------
# Draft mode


def test_draft_reduces_large_jpeg_but_reports_original_size() -> None:
    data = fx.jpeg_bytes(2000, 1500)
    full = decode(data)
    small = decode(data, draft_to=256)
    assert full.scale == 1.0 and full.image.size == (2000, 1500)
    assert (small.width, small.height) == (2000, 1500)
    assert small.image.size == (500, 375)  # 1/4: 1/8 would make the short side 188 < 256
    assert small.scale == pytest.approx(0.25)
    # Draft decoding is a faithful downscale: mean colour barely moves.
    a = np.asarray(full.image, np.float64).mean(axis=(0, 1))
    b = np.asarray(small.image, np.float64).mean(axis=(0, 1))
    assert np.abs(a - b).max() < 2.0


@pytest.mark.parametrize("size", [(256, 256), (300, 2000), (1023, 777), (4000, 520), (700, 513)])
def test_draft_keeps_the_short_side_at_least_draft_to(size: tuple[int, int]) -> None:
    dec = decode(fx.jpeg_bytes(*size, quality=60), draft_to=256)
    assert min(dec.image.size) >= 256
    assert (dec.width, dec.height) == size
    assert dec.scale == pytest.approx(dec.image.width / size[0])


def test_draft_is_a_noop_for_small_jpegs_and_other_formats() -> None:
    assert decode(fx.jpeg_bytes(300, 200), draft_to=256).scale == 1.0
    png = decode(fx.png_bytes(1200, 900), draft_to=256)
    assert png.scale == 1.0 and png.image.size == (1200, 900)


def test_draft_to_must_be_positive() -> None:
    with pytest.raises(InvalidInput):
        decode(fx.jpeg_bytes(64, 48), draft_to=0)


# ---------------------------------------------------------------------------------------------
# Conversions


def test_exif_orientation_is_applied() -> None:
    dec = decode(fx.exif_rotated_jpeg(60, 40, orientation=6))
    assert dec.image.size == (40, 60)
    assert (dec.width, dec.height) == (40, 60)  # original size, after rotation
    assert close(pixel(dec.image, 20, 5), (255, 0, 0), 40)  # red band rotated to the top
    assert close(pixel(dec.image, 20, 55), (0, 0, 255), 40)
    # The output carries no orientation of its own: rotating "again" changes nothing.
    assert ImageOps.exif_transpose(dec.image).size == (40, 60)


def test_exif_orientation_with_draft() -> None:
    image = Image.fromarray(fx.photo_array(1600, 1200))
    exif = Image.Exif()
    exif[0x0112] = 8
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    dec = decode(out.getvalue(), draft_to=256)
    assert (dec.width, dec.height) == (1200, 1600)
    assert dec.image.size == (300, 400)
    assert dec.scale == pytest.approx(0.25)


def test_cmyk_jpeg_colours_are_roughly_right() -> None:
    dec = decode(fx.cmyk_jpeg(64, 32))
    assert dec.image.mode == "RGB"
    assert close(pixel(dec.image, 8, 16), (255, 0, 0), 40)
    assert close(pixel(dec.image, 56, 16), (0, 0, 255), 40)


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    dec = decode(fx.png16_gray((0, 16448, 32768, 65535)))
    row = [pixel(dec.image, x, 1) for x in range(4)]
    assert row == [(0, 0, 0), (64, 64, 64), (128, 128, 128), (255, 255, 255)]


def test_16_bit_rgb_is_scaled() -> None:
    dec = decode(fx.png16_rgb((0, 16448, 32768, 65535)))
    assert [pixel(dec.image, x, 0)[0] for x in range(4)] == [0, 64, 128, 255]
    assert pixel(dec.image, 0, 0)[1:] == (255, 0)


def test_32_bit_integer_and_float_images_are_scaled() -> None:
    wide = Image.fromarray(np.array([[0, 50_000, 100_000]], np.int32), "I")
    out = io.BytesIO()
    wide.save(out, "TIFF")
    dec = decode(out.getvalue())
    assert [pixel(dec.image, x, 0)[0] for x in range(3)] == [0, 128, 255]
    flt = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    out = io.BytesIO()
    flt.save(out, "TIFF")
    dec = decode(out.getvalue())
    assert [pixel(dec.image, x, 0)[0] for x in range(3)] == [0, 128, 255]


def test_rgba_is_composited_on_white() -> None:
    dec = decode(fx.rgba_png(40, 20))
    assert pixel(dec.image, 5, 10) == (255, 0, 0)
    assert pixel(dec.image, 35, 10) == (255, 255, 255)  # transparent -> white, not black


def test_la_is_composited_on_white() -> None:
    dec = decode(fx.la_png(40, 20))
    assert pixel(dec.image, 5, 10) == (0, 0, 0)
    assert pixel(dec.image, 35, 10) == (255, 255, 255)


def test_palette_transparency_is_composited_on_white() -> None:
    dec = decode(fx.palette_png_transparent(40, 20))
    assert pixel(dec.image, 5, 10) == (0, 200, 0)
    assert pixel(dec.image, 35, 10) == (255, 255, 255)


@pytest.mark.parametrize(("make", "fmt"), [(fx.animated_gif, "GIF"), (fx.animated_webp, "WEBP")])
def test_animations_give_their_first_frame(make: object, fmt: str) -> None:
    dec = decode(make())  # type: ignore[operator]
    assert dec.format == fmt
    assert dec.frames == 3
    assert close(pixel(dec.image, 16, 16), (255, 0, 0), 10)


# ---------------------------------------------------------------------------------------------
# Rejections


def test_too_large_bytes() -> None:
    data = fx.oversized_jpeg(5000)
    err = rejected(data, ImageLimits(max_bytes=4096, max_pixels=10**8))
    assert err.reason == "too_large_bytes"
    assert "4,096" in err.message


def test_too_many_pixels_is_checked_from_the_header() -> None:
    err = rejected(fx.png_bytes(300, 300), ImageLimits(max_bytes=10**8, max_pixels=10_000))
    assert err.reason == "too_many_pixels"
    assert "300x300" in err.message


def test_too_many_pixels_honours_draft() -> None:
    # The limit is on the original image even when draft mode would decode it smaller.
    limits = ImageLimits(max_bytes=10**8, max_pixels=100_000)
    assert rejected(fx.jpeg_bytes(400, 300), limits, draft_to=32).reason == "too_many_pixels"


def test_decompression_bomb_past_pillows_own_limit() -> None:
    data = fx.bomb_png(20000, 20000)
    assert len(data) < 8000
    err = rejected(data)
    assert err.reason == "decompression_bomb"


def test_decompression_bomb_below_pillows_limit_uses_ours() -> None:
    # 81 Mpx is under Pillow's own warning threshold (89 Mpx): our limit and ratio must catch it.
    err = rejected(fx.bomb_png(9000, 9000))
    assert err.reason == "decompression_bomb"
    assert "9000x9000" in err.message


def test_pillow_bomb_warning_as_error_is_still_classified() -> None:
    data = fx.bomb_png(10000, 10000)  # 100 Mpx: Pillow warns (89 Mpx) but does not raise
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rejected(data).reason == "decompression_bomb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert rejected(data).reason == "decompression_bomb"


def test_zip_bomb_in_metadata() -> None:
    data = fx.iccp_bomb_png()
    assert len(data) < 20_000
    assert rejected(data).reason == "decompression_bomb"


@pytest.mark.parametrize(
    "make",
    [
        fx.truncated_jpeg,
        fx.truncated_png,
        lambda: fx.jpeg_bytes(320, 240)[:200],  # cut inside the headers
        lambda: fx.webp_bytes(320, 240)[:300],
        lambda: fx.gif_bytes(64, 48)[:300],
        lambda: fx.tiff_bytes(64, 48)[:3000],
    ],
)
def test_truncated(make: object) -> None:
    assert rejected(make()).reason == "truncated"  # type: ignore[operator]


@pytest.mark.parametrize(
    ("data", "word"),
    [
        (b"", "empty"),
        (fx.random_bytes(4096), "recognise"),
        (fx.html_bytes(), "HTML"),
        (fx.text_bytes(), "text"),
    ],
)
def test_not_an_image(data: bytes, word: str) -> None:
    err = rejected(data)
    assert err.reason == "not_an_image"
    assert word in err.message


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (fx.pdf_bytes, "PDF"),
        (fx.svg_bytes, "SVG"),
        (fx.ico_bytes, "ICO"),
        (fx.heic_header, "HEIC"),
    ],
)
def test_unsupported_format(make: object, name: str) -> None:
    err = rejected(make())  # type: ignore[operator]
    assert err.reason == "unsupported_format"
    assert name in err.message


def test_eps_is_unsupported_and_never_rendered() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    assert rejected(eps).reason == "unsupported_format"


def test_corrupt_png_data() -> None:
    data = bytearray(fx.png_bytes(200, 150))
    mid = len(data) // 2
    data[mid : mid + 300] = b"\x00" * 300
    assert rejected(bytes(data)).reason == "corrupt"


def test_corrupt_header_with_image_magic() -> None:
    # A complete file (end marker present) whose header is garbage.
    data = b"\xff\xd8\xff" + fx.random_bytes(500, seed=3) + b"\xff\xd9"
    assert rejected(data).reason == "corrupt"


def test_source_is_recorded_in_details() -> None:
    err = rejected(b"", source="shoes/red.jpg")
    assert err.details["source"] == "shoes/red.jpg"


# ---------------------------------------------------------------------------------------------
# Thumbnails and hashes


def test_thumbnail_webp_and_jpeg() -> None:
    image = decode(fx.jpeg_bytes(800, 400)).image
    for fmt in ("WEBP", "JPEG"):
        thumb = Image.open(io.BytesIO(make_thumbnail(image, 256, fmt=fmt)))
        assert thumb.format == fmt
        assert thumb.size == (256, 128)
    tall = Image.open(io.BytesIO(make_thumbnail(image.rotate(90, expand=True), 100)))
    assert tall.size == (50, 100)


def test_thumbnail_never_enlarges_and_accepts_other_modes() -> None:
    small = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    thumb = Image.open(io.BytesIO(make_thumbnail(small, 256)))
    assert thumb.size == (40, 30)
    assert close(pixel(thumb.convert("RGB"), 20, 15), (255, 255, 255), 8)
    with pytest.raises(InvalidInput):
        make_thumbnail(small, 0)
    with pytest.raises(InvalidInput):
        make_thumbnail(small, 64, fmt="GIF")


def test_content_hash() -> None:
    assert content_hash(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_perceptual_hash_and_hamming() -> None:
    a = decode(fx.jpeg_bytes(400, 300, seed=1)).image
    a_small = decode(fx.jpeg_bytes(400, 300, seed=1, quality=40)).image.resize((200, 150))
    b = decode(fx.jpeg_bytes(400, 300, seed=7)).image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    ha, ha2, hb = perceptual_hash(a), perceptual_hash(a_small), perceptual_hash(b)
    assert len(ha) == 16 and int(ha, 16) >= 0
    assert hamming(ha, ha) == 0
    assert hamming(ha, ha2) <= 8  # same picture, smaller and recompressed
    assert hamming(ha, hb) > 20
    assert hamming("ff", "00") == 8
    with pytest.raises(InvalidInput):
        hamming("ff", "0")
    with pytest.raises(InvalidInput):
        hamming("zz", "00")


def test_phash_of_drafted_decode_is_close_to_full() -> None:
    data = fx.jpeg_bytes(2000, 1500, seed=4)
    full, small = decode(data), decode(data, draft_to=256)
    assert hamming(perceptual_hash(full.image), perceptual_hash(small.image)) <= 8


# ---------------------------------------------------------------------------------------------
# Crops


def test_crop_maps_original_coordinates_onto_a_drafted_image() -> None:
    arr = np.zeros((1200, 1600, 3), np.uint8)
    arr[:, :] = (0, 0, 255)
    arr[400:800, 600:1000] = (255, 0, 0)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "JPEG", quality=95)
    dec = decode(out.getvalue(), draft_to=256)
    assert dec.scale < 1
    piece = crop(dec.image, (600, 400, 1000, 800), (dec.width, dec.height))
    assert piece.size == (100, 100)
    assert close(tuple(np.asarray(piece).mean(axis=(0, 1)).round().astype(int)), (255, 0, 0), 25)
    full = crop(decode(out.getvalue()).image, (600, 400, 1000, 800), (1600, 1200))
    assert full.size == (400, 400)


def test_crop_clamps_rounding_and_accepts_floats() -> None:
    image = Image.new("RGB", (100, 80))
    assert crop(image, (-0.5, 0, 100.4, 80.9), (100, 80)).size == (100, 80)
    assert crop(image, (10.2, 10.7, 40.5, 50.1), (100, 80)).size == (31, 41)


@pytest.mark.parametrize(
    "box",
    [
        (0, 0, 200, 50),  # outside
        (-10, 0, 50, 50),
        (50, 50, 10, 60),  # inverted
        (10, 10, 10, 60),  # empty
        (10, 10, 20, 60),  # narrower than the minimum
        (0, 0, 50),  # three numbers
        (0, 0, float("nan"), 50),
        (0, 0, "50", 50),
        (0, True, 50, 50),
    ],
)
def test_crop_rejects_bad_boxes(box: tuple[object, ...]) -> None:
    with pytest.raises(InvalidInput):
        crop(Image.new("RGB", (100, 80)), box, (100, 80))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Reading local files


def test_read_local_file(tmp_path: Path) -> None:
    data = fx.jpeg_bytes(64, 48)
    p = tmp_path / "a.jpg"
    p.write_bytes(data)
    assert read_source_bytes(str(p), LIMITS, timeout=1, allow_url=False) == data


def test_read_local_file_errors(tmp_path: Path) -> None:
    def reason(ref: str, limits: ImageLimits = LIMITS) -> str:
        with pytest.raises(ImageRejected) as info:
            read_source_bytes(ref, limits, timeout=1, allow_url=True)
        assert info.value.reason in REJECT_REASONS and info.value.hint
        return info.value.reason

    assert reason(str(tmp_path / "missing.jpg")) == "unreadable_file"
    assert reason(str(tmp_path)) == "unreadable_file"
    big = tmp_path / "big.jpg"
    big.write_bytes(fx.oversized_jpeg(5000))
    assert reason(str(big), ImageLimits(max_bytes=4096, max_pixels=10**8)) == "too_large_bytes"
    for ref in ("file:///etc/passwd", "ftp://example.com/a.jpg", "data:image/png;base64,AAAA"):
        assert reason(ref) == "unsupported_url"


def test_local_files_can_be_refused(tmp_path: Path) -> None:
    p = tmp_path / "a.jpg"
    p.write_bytes(fx.jpeg_bytes(64, 48))
    for ref in (str(p), "/etc/passwd", "relative/a.jpg"):
        with pytest.raises(ImageRejected) as info:
            read_source_bytes(ref, LIMITS, timeout=1, allow_url=True, allow_local_files=False)
        assert info.value.reason == "unsupported_url"


def test_url_fetch_can_be_disabled() -> None:
    with pytest.raises(ImageRejected) as info:
        read_source_bytes("http://127.0.0.1:9/a.jpg", LIMITS, timeout=1, allow_url=False)
    assert info.value.reason == "url_fetch_disabled"


# ---------------------------------------------------------------------------------------------
# Reading URLs, from a local server

IMAGE = fx.jpeg_bytes(64, 48)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path
        try:
            if path == "/image.jpg":
                self._send(200, IMAGE, Content_Type="image/jpeg")
            elif path == "/page.html":
                self._send(200, fx.html_bytes(), Content_Type="text/html")
            elif path == "/huge":  # no Content-Length: only the byte cap can stop it
                self.send_response(200)
                self.end_headers()
                for _ in range(2000):
                    self.wfile.write(b"\x00" * 65536)
            elif path == "/declared-huge":
                self.send_response(200)
                self.send_header("Content-Length", str(10**10))
                self.end_headers()
                self.wfile.write(b"\x00" * 1000)
            elif path == "/slow":
                time.sleep(3)
                self._send(200, IMAGE)
            elif path == "/drip":  # each byte arrives in time, the whole never does
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(1000):
                    self.wfile.write(b"\x00")
                    self.wfile.flush()
                    time.sleep(0.05)
            elif path == "/redirect":
                self._send(302, b"", Location="/image.jpg")
            elif path == "/redirect-file":
                self._send(302, b"", Location="file:///etc/passwd")
            elif path == "/redirect-ftp":
                self._send(301, b"", Location="ftp://127.0.0.1/x.jpg")
            elif path == "/loop":
                self._send(302, b"", Location="/loop")
            else:
                self._send(404, b"not found")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up on purpose


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def fetch(url: str, limits: ImageLimits = LIMITS, timeout: float = 2.0, **kw: bool) -> bytes:
    return read_source_bytes(url, limits, timeout=timeout, allow_url=True, **kw)


def fetch_reason(url: str, limits: ImageLimits = LIMITS, timeout: float = 2.0, **kw: bool) -> str:
    with pytest.raises(ImageRejected) as info:
        fetch(url, limits, timeout, **kw)
    assert info.value.reason in REJECT_REASONS and info.value.hint
    return info.value.reason


def test_fetch_image(server: str) -> None:
    data = fetch(f"{server}/image.jpg")
    assert data == IMAGE
    assert decode(data).format == "JPEG"


def test_fetch_html_page_is_not_an_image(server: str) -> None:
    assert rejected(fetch(f"{server}/page.html")).reason == "not_an_image"


def test_fetch_404(server: str) -> None:
    assert fetch_reason(f"{server}/missing.jpg") == "unreadable_url"


def test_fetch_huge_body_is_cut(server: str) -> None:
    limits = ImageLimits(max_bytes=200_000, max_pixels=10**8)
    t0 = time.monotonic()
    assert fetch_reason(f"{server}/huge", limits) == "too_large_bytes"
    assert fetch_reason(f"{server}/declared-huge", limits) == "too_large_bytes"
    assert time.monotonic() - t0 < 5


def test_fetch_timeout(server: str) -> None:
    t0 = time.monotonic()
    assert fetch_reason(f"{server}/slow", timeout=0.3) == "unreadable_url"
    assert fetch_reason(f"{server}/drip", timeout=0.5) == "unreadable_url"
    assert time.monotonic() - t0 < 2.5


def test_fetch_redirects(server: str) -> None:
    assert fetch(f"{server}/redirect") == IMAGE
    assert fetch_reason(f"{server}/redirect-file") == "unsupported_url"
    assert fetch_reason(f"{server}/redirect-ftp") == "unsupported_url"
    assert fetch_reason(f"{server}/loop") == "unreadable_url"


def test_fetch_refuses_private_hosts_when_asked(server: str) -> None:
    assert fetch_reason(f"{server}/image.jpg", allow_private_hosts=False) == "unsupported_url"


def test_fetch_connection_refused() -> None:
    # Port 9 (discard) on loopback: nothing listens there in a test environment.
    assert fetch_reason("http://127.0.0.1:9/a.jpg", timeout=1.0) == "unreadable_url"


def test_malformed_url() -> None:
    assert fetch_reason("http://[::1/a.jpg") == "unsupported_url"
    assert fetch_reason("http:///a.jpg") == "unsupported_url"


# ---------------------------------------------------------------------------------------------
# Fuzz: damaged files give a worded outcome and nothing raw on the terminal

_FUZZ_SEEDS = {
    "tiff": fx.tiff_bytes(),
    "exif_jpeg": fx.exif_rotated_jpeg(),
    "jpeg": fx.jpeg_bytes(64, 48),
    "png": fx.png_bytes(64, 48),
    "webp": fx.webp_bytes(64, 48),
    "gif": fx.animated_gif(),
}


@settings(max_examples=300, deadline=None)
@given(
    seed=st.sampled_from(sorted(_FUZZ_SEEDS)),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_damaged_files_are_accepted_or_rejected_without_raw_warnings(
    seed: str, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(_FUZZ_SEEDS[seed])
    for pos, value in edits:
        data[pos % len(data)] = value
    # The filters as they are (no simplefilter): what a user's terminal would print.
    with warnings.catch_warnings(record=True) as shown:
        try:
            out = decode(bytes(data), draft_to=64)
            assert out.image.mode == "RGB"
        except ImageRejected as e:
            assert e.reason in REJECT_REASONS and e.message
    assert [str(w.message) for w in shown] == []
