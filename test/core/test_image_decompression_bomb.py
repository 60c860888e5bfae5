"""Compressed images are size-checked from their header before decoding (issue 13, item 6)."""

from __future__ import annotations

import struct
import time
import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from lss_bev_ros.conversions import (
    ConversionError,
    ImageConversionError,
    check_compressed_size,
    compressed_image_size,
    compressed_to_rgb,
    decode_compressed,
)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid all-black RGB PNG of width x height, ~1 MB for 20000^2 (1.2 GB decoded): one row
    compressed with a full flush, repeated; the adler32 of all-zero data is (len % 65521) << 16
    | 1."""
    row = bytes(1 + 3 * width)  # filter byte 0 + black pixels
    comp = zlib.compressobj(9)
    head = comp.compress(b"")  # zlib header
    first = comp.compress(row) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(row) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.flush(zlib.Z_FINISH)[:-4]  # final empty block, without the adler32
    raw_len = len(row) * height
    adler = ((raw_len % 65521) << 16) | 1
    idat = head + first + again * (height - 1) + tail + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def test_png_bomb_helper_builds_a_decodable_png() -> None:
    small = png_bomb(64, 48)
    img = cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (48, 64, 3) and not img.any()


def test_png_declaring_20000_squared_pixels_is_refused_before_decoding() -> None:
    bomb = png_bomb()
    assert len(bomb) < 2_000_000
    assert compressed_image_size(bomb) == (20000, 20000, "png")
    t0 = time.perf_counter()
    with pytest.raises(ImageConversionError, match=r"20000x20000.*limit") as info:
        compressed_to_rgb(SimpleNamespace(format="png", data=bomb))
    elapsed = time.perf_counter() - t0
    assert isinstance(info.value, ConversionError)
    assert elapsed < 1.0  # read from the header; decoding takes seconds and 1.2 GB


def test_pixel_limit_is_configurable() -> None:
    png = cv2.imencode(".png", np.zeros((1200, 1000, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageConversionError, match="1000x1200"):
        decode_compressed(png, max_pixels=1_000_000)
    assert decode_compressed(png, max_pixels=1_200_000).shape == (1200, 1000, 3)
    assert compressed_to_rgb(SimpleNamespace(format="png", data=png)).shape == (1200, 1000, 3)


def test_jpeg_size_is_read_from_its_frame_header() -> None:
    jpeg = cv2.imencode(".jpg", np.zeros((900, 1600, 3), np.uint8))[1].tobytes()
    assert compressed_image_size(jpeg) == (1600, 900, "jpeg")
    with pytest.raises(ImageConversionError, match="limit"):
        decode_compressed(jpeg, max_pixels=1_000_000)
    assert decode_compressed(jpeg, reduction=4).shape == (225, 400, 3)


def test_other_formats_are_size_checked_through_their_header() -> None:
    bmp = cv2.imencode(".bmp", np.zeros((400, 500, 3), np.uint8))[1].tobytes()
    assert compressed_image_size(bmp)[:2] == (500, 400)
    with pytest.raises(ImageConversionError, match="limit"):
        decode_compressed(bmp, max_pixels=100_000)


def test_expected_size_is_checked_before_decoding() -> None:
    with pytest.raises(ImageConversionError, match="expected 1600x900"):
        check_compressed_size(png_bomb(), expected_size=(900, 1600), max_pixels=10**12)


def test_data_in_no_known_format_is_a_conversion_error() -> None:
    with pytest.raises(ImageConversionError, match="no known format"):
        decode_compressed(b"GIF-ish garbage" * 10)
    with pytest.raises(ImageConversionError, match="JPEG"):
        decode_compressed(b"\xff\xd8\xff\xe0\x00\x10JFIF")


@pytest.mark.parametrize("ext", [".bmp", ".tiff", ".webp", ".ppm", ".jp2"])
def test_other_opencv_formats_report_their_declared_size(ext: str) -> None:
    data = cv2.imencode(ext, np.zeros((40, 50, 3), np.uint8))[1].tobytes()
    assert compressed_image_size(data)[:2] == (50, 40)
    assert decode_compressed(data).shape == (40, 50, 3)


def test_garbage_is_a_conversion_error_even_with_ultralytics_patching_pillow() -> None:
    # ultralytics replaces PIL.Image.open with a wrapper that, on an unknown file, tries to
    # install and import pi-heif: the size check must not go through it
    import ultralytics.utils.patches  # noqa: F401

    rng = np.random.default_rng(0)
    for n in (16, 600, 5000):
        with pytest.raises(ImageConversionError, match="could not decode"):
            compressed_image_size(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
