"""3D objects for planners (ROS-free): lift per-camera 2D detections with the LSS BEV grid and the
rig calibration to objects on the ground plane of base_link, merge them across cameras, track
them in map (or base_link), and write / score nuScenes detection and tracking submissions."""

from lss_bev_ros.objects.classes import CLASS_PRIORS, ClassPrior, nuscenes_name
from lss_bev_ros.objects.config import MODES, ObjectsConfig
from lss_bev_ros.objects.pipeline import ObjectPipeline
from lss_bev_ros.objects.types import Object3D, ObjectsFrame, Pose2D

__all__ = [
    "CLASS_PRIORS",
    "MODES",
    "ClassPrior",
    "Object3D",
    "ObjectPipeline",
    "ObjectsConfig",
    "ObjectsFrame",
    "Pose2D",
    "nuscenes_name",
]
