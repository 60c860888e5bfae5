"""sensor_msgs/Image and CompressedImage <-> H x W x 3 uint8 RGB numpy arrays.

Does the job of cv_bridge (not installable from PyPI) for the encodings cameras publish; on a
vehicle with cv_bridge nothing changes: these functions only read ``encoding``, ``height``,
``width``, ``step``, ``is_bigendian`` and ``data`` (or ``format`` and ``data``).
"""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np

from lss_bev_ros.conversions.errors import ConversionError


class ImageConversionError(ConversionError):
    """The message cannot be turned into an RGB image (bad encoding, size, or payload)."""


MAX_COMPRESSED_PIXELS = 36_000_000
"""Default limit on the pixels a CompressedImage may declare (8K UHD is 33.2 MP; a 1600x900
nuScenes camera 1.44 MP). Checked from the header before anything is decoded."""

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic variants)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}

# formats besides PNG / JPEG whose header Pillow reads and OpenCV decodes (others are refused)
_PIL_FORMATS = ("BMP", "DIB", "JPEG2000", "PPM", "SUN", "TIFF", "WEBP")

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3}


def _as_bytes(data) -> memoryview:
    if isinstance(data, bytes | bytearray):
        return memoryview(data)
    return memoryview(data).cast("B")


def image_to_rgb(msg, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """sensor_msgs/Image -> H x W x 3 uint8 RGB (a copy only where the layout needs one).

    ``expected_size`` = (height, width) raises when the image has another size.
    """
    enc = str(msg.encoding)
    if enc not in _CHANNELS:
        raise ImageConversionError(
            f"unsupported image encoding {enc!r} (supported: {', '.join(sorted(_CHANNELS))})"
        )
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    ch = _CHANNELS[enc]
    if h <= 0 or w <= 0:
        raise ImageConversionError(f"empty image {w}x{h}")
    if expected_size is not None and (h, w) != tuple(expected_size):
        raise ImageConversionError(
            f"image is {w}x{h}, expected {expected_size[1]}x{expected_size[0]}"
        )
    if step < w * ch:
        raise ImageConversionError(f"step {step} < width*channels {w * ch}")
    buf = np.frombuffer(_as_bytes(msg.data), dtype=np.uint8)
    if buf.size < step * h:
        raise ImageConversionError(f"image data has {buf.size} bytes, expected {step * h}")
    arr = buf[: step * h].reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if ch == 1:
        return np.repeat(arr, 3, axis=2)
    if enc in ("rgb8", "8UC3"):
        return arr
    if enc == "bgr8":
        return arr[:, :, ::-1]
    if enc == "rgba8":
        return arr[:, :, :3]
    return arr[:, :, 2::-1]  # bgra8


def _jpeg_size(buf: bytes) -> tuple[int, int]:
    """(width, height) from the first start-of-frame segment of a JPEG."""
    i, n = 2, len(buf)
    while i + 4 <= n:
        if buf[i] != 0xFF:
            raise ImageConversionError(
                f"could not decode JPEG: corrupt header, no marker at byte {i}")
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        (length,) = struct.unpack_from(">H", buf, i + 2)
        if marker in _JPEG_SOF:
            if i + 9 > n or length < 7:
                break
            h, w = struct.unpack_from(">HH", buf, i + 5)
            return w, h
        i += 2 + length
    raise ImageConversionError("could not decode JPEG: corrupt or truncated, no frame header (SOF)")


def compressed_image_size(data) -> tuple[int, int, str]:
    """(width, height, format) that a compressed image declares in its header, read without
    decoding: PNG IHDR, JPEG SOF, other formats through Pillow's lazy ``Image.open``.
    Raises :class:`ImageConversionError` for data in no known format."""
    buf = bytes(_as_bytes(data)[:65536])  # headers sit at the start (JPEG: after EXIF/APPn)
    if buf.startswith(_PNG_MAGIC):
        if len(buf) < 24 or buf[12:16] != b"IHDR":
            raise ImageConversionError("could not decode PNG: corrupt, no IHDR chunk")
        w, h = struct.unpack_from(">II", buf, 16)
        return w, h, "png"
    if buf.startswith(b"\xff\xd8"):
        w, h = _jpeg_size(buf)
        return w, h, "jpeg"
    return _pil_header_size(bytes(_as_bytes(data)), len(buf))


def _pil_header_size(data: bytes, n_header: int) -> tuple[int, int, str]:
    """(width, height, format) from the header parser of Pillow's plugin for one of
    :data:`_PIL_FORMATS`, called directly: ``PIL.Image.open`` is bypassed because it checks
    for bombs by itself (raising before we learn the size) and because ultralytics patches it
    to install packages when a file is not recognised."""
    from PIL import Image

    Image.init()
    prefix = data[:16]
    for fmt in _PIL_FORMATS:
        factory, accept = Image.OPEN.get(fmt, (None, None))
        if factory is None or (accept is not None and not accept(prefix)):
            continue
        try:
            im = factory(io.BytesIO(data), "")
        except Exception as exc:  # a plugin's header parser rejecting the data
            raise ImageConversionError(
                f"could not decode {fmt} image: corrupt header: {type(exc).__name__}: {exc}"
            ) from exc
        w, h = (int(v) for v in im.size)
        im.close()
        return w, h, fmt.lower()
    raise ImageConversionError(
        f"could not decode compressed image: no known format ({n_header} header bytes; "
        f"PNG, JPEG, {', '.join(_PIL_FORMATS)} are read)")


def check_compressed_size(data, max_pixels: int = MAX_COMPRESSED_PIXELS,
                          expected_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(height, width) a compressed image declares; raises :class:`ImageConversionError` when
    it declares more than ``max_pixels`` pixels (a decompression bomb), an empty size, or
    another size than ``expected_size`` = (height, width). Nothing is decoded."""
    w, h, fmt = compressed_image_size(data)
    if w <= 0 or h <= 0:
        raise ImageConversionError(f"{fmt} image declares an empty size {w}x{h}")
    if w * h > max_pixels:
        raise ImageConversionError(
            f"{fmt} image declares {w}x{h} = {w * h} pixels, more than the limit of "
            f"{max_pixels} (decompression bomb?): not decoded")
    if expected_size is not None and (h, w) != tuple(expected_size):
        raise ImageConversionError(
            f"image is {w}x{h}, expected {expected_size[1]}x{expected_size[0]}")
    return h, w


_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                  4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def decode_compressed(data, reduction: int = 1, max_pixels: int = MAX_COMPRESSED_PIXELS,
                      expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """JPEG/PNG (any format OpenCV decodes) bytes -> H x W x 3 uint8 RGB, decoded at
    1/``reduction`` (1, 2, 4, 8; libjpeg DCT scaling) after checking the declared size
    (``max_pixels``, ``expected_size`` = full-size (height, width)) from the header.
    Raises :class:`ImageConversionError` for empty, oversized, corrupt or truncated data."""
    view = _as_bytes(data)
    if len(view) == 0:
        raise ImageConversionError("compressed image has no data")
    if reduction not in _REDUCED_FLAGS:
        raise ImageConversionError(f"reduction {reduction} not in {sorted(_REDUCED_FLAGS)}")
    check_compressed_size(view, max_pixels, expected_size)
    try:
        bgr = cv2.imdecode(np.frombuffer(view, dtype=np.uint8), _REDUCED_FLAGS[reduction])
    except cv2.error as exc:  # OpenCV's own limits / decoder failures
        raise ImageConversionError(f"could not decode compressed image: {exc}") from exc
    if bgr is None or bgr.ndim != 3:
        raise ImageConversionError(
            f"could not decode compressed image ({len(view)} bytes): corrupt or truncated")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def compressed_to_rgb(msg, expected_size: tuple[int, int] | None = None,
                      max_pixels: int = MAX_COMPRESSED_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> H x W x 3 uint8 RGB; the declared size is
    checked against ``max_pixels`` and ``expected_size`` = (height, width) before decoding."""
    return decode_compressed(msg.data, 1, max_pixels, expected_size)


def rgb_to_image_bytes(rgb: np.ndarray) -> tuple[int, int, int, bytes]:
    """H x W x 3 uint8 RGB -> (height, width, step, data) for an ``rgb8`` sensor_msgs/Image."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(f"expected H x W x 3 uint8, got {rgb.shape} {rgb.dtype}")
    a = np.ascontiguousarray(rgb)
    return a.shape[0], a.shape[1], a.shape[1] * 3, a.tobytes()


def encode_jpeg(rgb: np.ndarray, quality: int = 80) -> bytes:
    """H x W x 3 uint8 RGB -> JPEG bytes."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
        raise ImageConversionError(f"expected H x W x 3 uint8, got {rgb.shape} {rgb.dtype}")
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise ImageConversionError("JPEG encoding failed")
    return buf.tobytes()
