"""lss_bev_ros: Lift-Splat-Shoot BEV perception and multi-camera YOLO tracking for ROS 2.

Pure algorithm code lives in sub-packages that never import ROS (``lss``, ``data``, ``eval``,
``detection``, ``backends``, ``web``, ``calibration``, ``sync``, ``conversions``); ROS glue lives in
``nodes`` and ``pipeline``.

The generated message module ``lss_bev_ros.msg`` is produced by colcon (rosidl) into the install
space. ``extend_path`` lets it be found when this package is imported from a source checkout that
sits earlier on ``sys.path`` than the install space.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
