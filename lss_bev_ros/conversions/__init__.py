"""Message <-> numpy conversions. Functions take duck-typed messages (any object with the
message's attributes), so they are testable without ROS; builders import message classes lazily."""

from lss_bev_ros.conversions.grid import (
    GridSpec,
    occupancy_to_probability,
    probability_to_occupancy,
)
from lss_bev_ros.conversions.image import (
    ImageConversionError,
    compressed_to_rgb,
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
    "GridSpec",
    "ImageConversionError",
    "PointCloudError",
    "compressed_to_rgb",
    "encode_jpeg",
    "image_to_rgb",
    "occupancy_to_probability",
    "pointcloud2_to_array",
    "points_to_pointcloud2_fields",
    "probability_to_occupancy",
    "rgb_to_image_bytes",
]
