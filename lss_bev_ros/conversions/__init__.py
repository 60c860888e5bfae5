"""Message <-> numpy conversions. Functions take duck-typed messages (any object with the
message's attributes), so they are testable without ROS; builders import message classes lazily.

Every conversion failure raises a subclass of :class:`ConversionError` (image, point cloud,
grid): callers catch that one type."""

from lss_bev_ros.conversions.errors import ConversionError
from lss_bev_ros.conversions.grid import (
    GridConversionError,
    GridSpec,
    occupancy_to_probability,
    probability_to_occupancy,
)
from lss_bev_ros.conversions.image import (
    MAX_COMPRESSED_PIXELS,
    ImageConversionError,
    check_compressed_size,
    compressed_image_size,
    compressed_to_rgb,
    decode_compressed,
    encode_jpeg,
    image_to_rgb,
    rgb_to_image_bytes,
)
from lss_bev_ros.conversions.pointcloud import (
    PointCloudError,
    pointcloud2_to_array,
    points_to_pointcloud2_fields,
)

__all__ = [
    "MAX_COMPRESSED_PIXELS",
    "ConversionError",
    "GridConversionError",
    "GridSpec",
    "ImageConversionError",
    "PointCloudError",
    "check_compressed_size",
    "compressed_image_size",
    "compressed_to_rgb",
    "decode_compressed",
    "encode_jpeg",
    "image_to_rgb",
    "occupancy_to_probability",
    "pointcloud2_to_array",
    "points_to_pointcloud2_fields",
    "probability_to_occupancy",
    "rgb_to_image_bytes",
]
