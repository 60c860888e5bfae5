"""sensor_msgs/PointCloud2 <-> numpy. Reads any field layout (offsets, datatypes, endianness,
padding) and returns float32 columns; non-finite points are reported, never silently kept."""

from __future__ import annotations

import numpy as np

from lss_bev_ros.conversions.errors import ConversionError


class PointCloudError(ConversionError):
    """The cloud cannot be decoded (missing x/y/z, field layout, sizes, datatypes)."""


# sensor_msgs/PointField datatypes
_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
FLOAT32 = 7
UINT16 = 4


def _layout(msg) -> tuple[int, int, int, int]:
    """Validated (points per row, rows, point_step, row_step) of a cloud; raises
    :class:`PointCloudError` on any inconsistency with the data length."""
    try:
        w, h = int(msg.width), int(msg.height)
        step = int(msg.point_step)
        row_step = int(getattr(msg, "row_step", 0) or 0)
    except (TypeError, ValueError) as exc:
        raise PointCloudError(f"cloud size fields are not integers: {exc}") from exc
    if w < 0 or h < 0:
        raise PointCloudError(f"cloud is {w} x {h} points")
    if w * h and step <= 0:
        raise PointCloudError(f"point_step {step} for {w} x {h} points")
    if row_step == 0:
        row_step = w * step  # publishers that leave row_step unset
    if row_step < w * step:
        raise PointCloudError(f"row_step {row_step} < width {w} x point_step {step}")
    return w, h, step, row_step


def pointcloud2_to_array(
    msg, fields: tuple[str, ...] = ("x", "y", "z", "intensity"), drop_non_finite: bool = True
) -> tuple[np.ndarray, int]:
    """PointCloud2 -> (P x len(fields) float32, number of dropped non-finite points).

    Fields other than x/y/z that the cloud lacks are filled with 0. Every malformed cloud
    (field beyond ``point_step``, unknown datatype, data length != ``height * row_step``,
    ``row_step`` < ``width * point_step``) raises :class:`PointCloudError`, nothing else.
    """
    try:
        return _to_array(msg, fields, drop_non_finite)
    except PointCloudError:
        raise
    except (ValueError, TypeError, IndexError, AttributeError, OverflowError) as exc:
        # backstop: a layout the checks above missed must still be the one conversion error
        raise PointCloudError(f"cannot decode point cloud: {type(exc).__name__}: {exc}") from exc


def _to_array(msg, fields: tuple[str, ...], drop_non_finite: bool) -> tuple[np.ndarray, int]:
    present = {str(f.name): f for f in msg.fields}
    for req in ("x", "y", "z"):
        if req not in present:
            raise PointCloudError(f"point cloud has no {req!r} field (has {sorted(present)})")
    w, h, step, row_step = _layout(msg)
    n = w * h
    raw = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8)
    if raw.size != h * row_step:
        raise PointCloudError(f"cloud data has {raw.size} bytes, expected height {h} x "
                              f"row_step {row_step} = {h * row_step}")
    if n == 0:
        return np.zeros((0, len(fields)), np.float32), 0
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for name in fields:
        f = present.get(name)
        if f is None:
            continue
        if f.datatype not in _DTYPES:
            raise PointCloudError(f"field {name!r} has unknown datatype {f.datatype} "
                                  f"(known: {sorted(_DTYPES)})")
        size = np.dtype(_DTYPES[f.datatype]).itemsize
        off = int(f.offset)
        if off < 0 or off + size > step:
            raise PointCloudError(f"field {name!r} at offset {off} ({size} bytes) does not fit "
                                  f"in point_step {step}")
        names.append(name)
        formats.append(order + _DTYPES[f.datatype])
        offsets.append(off)
    if row_step != w * step:  # padded rows: drop the padding
        raw = raw.reshape(h, row_step)[:, : w * step].reshape(-1)
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step})
    rec = raw.view(dt)
    out = np.zeros((n, len(fields)), np.float32)
    for i, name in enumerate(fields):
        if name in names:
            out[:, i] = rec[name]
    dropped = 0
    if drop_non_finite:
        ok = np.isfinite(out[:, :3]).all(axis=1)
        dropped = int(n - ok.sum())
        out = out[ok]
    return out, dropped


def points_to_pointcloud2_fields(
    points: np.ndarray,
) -> tuple[list[tuple[str, int, int]], int, bytes]:
    """P x 5 (x, y, z, intensity, ring) -> (fields [(name, offset, datatype)], point_step, data).

    x, y, z, intensity are float32; ring is uint16 (as Velodyne/nuScenes drivers publish it).
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 4:
        raise PointCloudError(f"expected P x 5 points, got {pts.shape}")
    dt = np.dtype(
        {
            "names": ["x", "y", "z", "intensity", "ring"],
            "formats": ["<f4", "<f4", "<f4", "<f4", "<u2"],
            "offsets": [0, 4, 8, 12, 16],
            "itemsize": 18,
        }
    )
    rec = np.zeros(pts.shape[0], dt)
    for i, name in enumerate(("x", "y", "z", "intensity")):
        rec[name] = pts[:, i]
    if pts.shape[1] > 4:
        rec["ring"] = np.clip(pts[:, 4], 0, 65535).astype(np.uint16)
    fields = [("x", 0, FLOAT32), ("y", 4, FLOAT32), ("z", 8, FLOAT32), ("intensity", 12, FLOAT32),
              ("ring", 16, UINT16)]
    return fields, 18, rec.tobytes()
