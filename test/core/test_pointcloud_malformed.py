"""Malformed sensor_msgs/PointCloud2 layouts raise the one conversion error, never numpy's."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from lss_bev_ros.conversions import (
    ConversionError,
    PointCloudError,
    pointcloud2_to_array,
    points_to_pointcloud2_fields,
)


def _cloud(n: int = 4, **changes) -> SimpleNamespace:
    pts = np.arange(n * 5, dtype=np.float32).reshape(n, 5)
    fields, step, data = points_to_pointcloud2_fields(pts)
    msg = SimpleNamespace(
        fields=[SimpleNamespace(name=nm, offset=o, datatype=d, count=1) for nm, o, d in fields],
        width=n, height=1, point_step=step, row_step=step * n, is_bigendian=False, data=data)
    for k, v in changes.items():
        setattr(msg, k, v)
    return msg


def _field(msg: SimpleNamespace, name: str, **changes) -> SimpleNamespace:
    for f in msg.fields:
        if f.name == name:
            for k, v in changes.items():
                setattr(f, k, v)
    return msg


MALFORMED = {
    "field offset beyond point_step": lambda: _field(_cloud(), "z", offset=40),
    "field straddling the end of a point": lambda: _field(_cloud(), "z", offset=16),
    "negative field offset": lambda: _field(_cloud(), "x", offset=-4),
    "point_step 4 with x, y, z at 0, 4, 8": lambda: _cloud(point_step=4, row_step=16),
    "point_step 0": lambda: _cloud(point_step=0, row_step=0),
    "data length not a multiple of point_step": lambda: _cloud(data=_cloud().data[:-5]),
    "data longer than height x row_step": lambda: _cloud(data=_cloud().data + b"\0" * 18),
    "width x height larger than the data": lambda: _cloud(height=3),
    "row_step smaller than width x point_step": lambda: _cloud(row_step=10),
    "negative width": lambda: _cloud(width=-4),
    "unknown datatype": lambda: _field(_cloud(), "y", datatype=42),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_cloud_raises_point_cloud_error(case: str) -> None:
    with pytest.raises(PointCloudError) as info:
        pointcloud2_to_array(MALFORMED[case](), fields=("x", "y", "z"))
    assert isinstance(info.value, ConversionError)
    assert str(info.value)  # a message that says what is wrong


def test_padded_rows_are_read_without_the_padding() -> None:
    good = _cloud(n=3)
    pts, _ = pointcloud2_to_array(good, fields=("x", "y", "z"))
    padded = _cloud(n=3, height=2, width=3, row_step=good.row_step + 6,
                    data=(good.data + b"\0" * 6) * 2)
    out, dropped = pointcloud2_to_array(padded, fields=("x", "y", "z"))
    assert dropped == 0
    np.testing.assert_array_equal(out, np.vstack([pts, pts]))


def test_cloud_without_row_step_is_read_as_dense() -> None:
    msg = _cloud(n=2)
    del msg.row_step
    out, _ = pointcloud2_to_array(msg, fields=("x", "y", "z"))
    np.testing.assert_array_equal(out, [[0, 1, 2], [5, 6, 7]])
