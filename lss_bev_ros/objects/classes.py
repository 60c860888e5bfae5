"""Detector classes -> nuScenes detection / tracking names, size priors and default attributes."""

from __future__ import annotations

from dataclasses import dataclass

from lss_bev_ros.detection.gt import CLASS_NAMES


@dataclass(frozen=True)
class ClassPrior:
    """Size prior of one class: mean (w, l, h) m and its standard deviation (m)."""

    name: str  # nuScenes detection name
    width: float
    length: float
    height: float
    size_std: float  # m, typical spread of w/l
    moving_attribute: str  # nuScenes attribute when moving
    static_attribute: str  # nuScenes attribute when not moving


CLASS_PRIORS: dict[str, ClassPrior] = {
    "car": ClassPrior("car", 1.85, 4.45, 1.62, 0.3, "vehicle.moving", "vehicle.parked"),
    "truck": ClassPrior("truck", 2.45, 7.7, 3.2, 1.0, "vehicle.moving", "vehicle.parked"),
    "bus": ClassPrior("bus", 2.9, 11.2, 3.25, 0.8, "vehicle.moving", "vehicle.parked"),
    "pedestrian": ClassPrior(
        "pedestrian", 0.65, 0.7, 1.75, 0.1, "pedestrian.moving", "pedestrian.standing"
    ),
}
"""Keyed by nuScenes detection name (the synthetic world's size ranges, lss_bev_ros.data.world)."""

DETECTOR_TO_NUSCENES: dict[str, str] = {n: n for n in CLASS_NAMES}
"""Detector class name (lss_bev_ros.detection.gt.CLASS_NAMES) -> nuScenes detection name."""

NUSCENES_TRACKING_NAMES: tuple[str, ...] = (
    "bicycle", "bus", "car", "motorcycle", "pedestrian", "trailer", "truck",
)
"""The devkit's tracking classes (nuscenes.eval.tracking: TRACKING_NAMES)."""


def nuscenes_name(detector_class: str) -> str:
    """Detector class name -> nuScenes detection name (ValueError for an unknown class)."""
    try:
        return DETECTOR_TO_NUSCENES[detector_class]
    except KeyError as exc:
        raise ValueError(f"no nuScenes name for detector class {detector_class!r}") from exc


def prior(name: str) -> ClassPrior:
    """Size prior of a nuScenes detection name (car prior for unknown names)."""
    return CLASS_PRIORS.get(name, CLASS_PRIORS["car"])


def attribute_for(name: str, speed: float, moving_mps: float = 0.5) -> str:
    """nuScenes attribute for a detection name at ``speed`` m/s ("" for names without one)."""
    p = CLASS_PRIORS.get(name)
    if p is None:
        return ""
    return p.moving_attribute if speed > moving_mps else p.static_attribute
