"""sensor_msgs/PointCloud2 <-> numpy. Reads any field layout (offsets, datatypes, endianness,
padding) and returns float32 columns; non-finite points are reported, never silently kept."""

from __future__ import annotations

import numpy as np


class PointCloudError(ValueError):
    """The cloud cannot be decoded (missing x/y/z, bad sizes)."""


# sensor_msgs/PointField datatypes
_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
FLOAT32 = 7
UINT16 = 4


def pointcloud2_to_array(
    msg, fields: tuple[str, ...] = ("x", "y", "z", "intensity"), drop_non_finite: bool = True
) -> tuple[np.ndarray, int]:
    """PointCloud2 -> (P x len(fields) float32, number of dropped non-finite points).

    Fields other than x/y/z that the cloud lacks are filled with 0.
    """
    present = {f.name: f for f in msg.fields}
    for req in ("x", "y", "z"):
        if req not in present:
            raise PointCloudError(f"point cloud has no {req!r} field (has {sorted(present)})")
    n = int(msg.width) * int(msg.height)
    step = int(msg.point_step)
    raw = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8)
    if n == 0:
        return np.zeros((0, len(fields)), np.float32), 0
    if step <= 0 or raw.size < n * step:
        raise PointCloudError(f"cloud data has {raw.size} bytes, expected {n} x {step}")
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for name in fields:
        f = present.get(name)
        if f is None:
            continue
        if f.datatype not in _DTYPES:
            raise PointCloudError(f"field {name!r} has unknown datatype {f.datatype}")
        names.append(name)
        formats.append(order + _DTYPES[f.datatype])
        offsets.append(int(f.offset))
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step})
    rec = raw[: n * step].view(dt)
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
