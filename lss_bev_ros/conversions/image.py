"""sensor_msgs/Image and CompressedImage <-> H x W x 3 uint8 RGB numpy arrays.

Does the job of cv_bridge (not installable from PyPI) for the encodings cameras publish; on a
vehicle with cv_bridge nothing changes: these functions only read ``encoding``, ``height``,
``width``, ``step``, ``is_bigendian`` and ``data`` (or ``format`` and ``data``).
"""

from __future__ import annotations

import cv2
import numpy as np


class ImageConversionError(ValueError):
    """The message cannot be turned into an RGB image (bad encoding, size, or payload)."""


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


def compressed_to_rgb(msg, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> H x W x 3 uint8 RGB."""
    raw = np.frombuffer(_as_bytes(msg.data), dtype=np.uint8)
    if raw.size == 0:
        raise ImageConversionError("compressed image has no data")
    bgr = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageConversionError(
            f"could not decode compressed image (format {getattr(msg, 'format', '?')!r}, "
            f"{raw.size} bytes): corrupt or truncated"
        )
    if expected_size is not None and bgr.shape[:2] != tuple(expected_size):
        h, w = bgr.shape[:2]
        raise ImageConversionError(
            f"image is {w}x{h}, expected {expected_size[1]}x{expected_size[0]}"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_image_bytes(rgb: np.ndarray) -> tuple[int, int, int, bytes]:
    """H x W x 3 uint8 RGB -> (height, width, step, data) for an ``rgb8`` sensor_msgs/Image."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(f"expected H x W x 3 uint8, got {rgb.shape} {rgb.dtype}")
    a = np.ascontiguousarray(rgb)
    return a.shape[0], a.shape[1], a.shape[1] * 3, a.tobytes()


def encode_jpeg(rgb: np.ndarray, quality: int = 80) -> bytes:
    """H x W x 3 uint8 RGB -> JPEG bytes."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise ImageConversionError("JPEG encoding failed")
    return buf.tobytes()
