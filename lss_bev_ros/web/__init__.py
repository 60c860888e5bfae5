"""Live view: MJPEG streams (``/cam``, ``/bev``) and the evaluation dashboard (``/eval``,
``/eval.json``) over plain HTTP. Standard library + numpy/cv2 only; no ROS imports."""

from lss_bev_ros.web.adaptive import AdaptiveQuality
from lss_bev_ros.web.server import BOUNDARY, DashboardServer
from lss_bev_ros.web.state import DashboardState, StreamHub

__all__ = ["BOUNDARY", "AdaptiveQuality", "DashboardServer", "DashboardState", "StreamHub"]
