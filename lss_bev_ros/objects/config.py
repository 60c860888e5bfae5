"""Configuration of the objects stage (lifting 2D + BEV to 3D, cross-camera merge, tracking)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

MODES: Mapping[str, str] = {
    "fused": "2D detections + ground plane + BEV ray range + BEV blob footprint/heading",
    "geometry": "2D detections + ground plane only (ablation)",
    "bev": "BEV blobs only, every blob a car (ablation)",
}
"""Evidence combinations of :class:`~lss_bev_ros.objects.pipeline.ObjectPipeline` (the one list of
choices: node parameter and bench read it from here)."""


@dataclass(frozen=True)
class ObjectsConfig:
    """Knobs of the objects stage. Metres, seconds, pixels, probabilities 0..1."""

    mode: str = "fused"  # key of MODES
    min_score: float = 0.2  # detections below this confidence are ignored
    ground_z: float = 0.0  # ground plane height in base_link, m
    max_range_m: float = 60.0  # objects further than this (horizontal, from the camera) dropped
    bottom_px_sigma: float = 2.5  # std of the box bottom edge, pixels
    bearing_px_sigma: float = 3.0  # std of the box horizontal centre, pixels
    ground_rel_sigma: float = 0.04  # relative range error of the flat-ground assumption
    height_rel_sigma: float = 0.12  # relative range error of the class-height range
    border_px: float = 2.0  # a box edge this close to the image border is truncated
    # BEV evidence
    bev_threshold: float = 0.4  # probability threshold of blobs
    bev_min_cells: int = 3  # blobs smaller than this are noise
    bev_ray_step_m: float = 0.25  # sampling step along a viewing ray
    bev_gate_sigma: float = 3.0  # a blob along the ray must lie within this many geometry sigmas
    bev_gate_m: float = 4.0  # ... or within this many metres
    bev_range_floor_m: float = 0.35  # minimum std of a BEV range, m
    bev_range_rel_sigma: float = 0.03  # relative std of a BEV range (grid blur with range)
    bev_max_range_m: float = 30.0  # no BEV range cue for objects the geometry puts further
    blob_max_area_ratio: float = 2.2  # blob area / prior footprint above this = several objects
    blob_min_elongation: float = 1.4  # major/minor std ratio below this: heading not observed
    # vehicles the BEV cues are used for: the LSS grid segments vehicles; buses (11 m, rare in
    # its training scenes) merge with neighbours in the 0.5 m grid and lose more than they gain
    bev_classes: tuple[str, ...] = ("car", "truck")
    fuse_blob_position: bool = True  # fuse a single-object blob's centroid into the position
    blob_position_sigma_m: float = 0.8  # std of a blob centroid as an object centre (+ its spread)
    bev_only_score: float = 0.0  # score scale of blobs no detection explains (fused mode)
    # cross-camera merge
    merge_chi2: float = 9.21  # Mahalanobis^2 gate (2 dof, 99 %)
    merge_max_m: float = 2.5  # and at most this far apart, m
    # tracking
    time_jump_s: float = 0.5  # a stamp this much older than the last resets the tracks
    accel_sigma: float = 1.5  # white-noise acceleration std of the CV model, m/s^2
    gate_chi2: float = 13.8  # association gate, Mahalanobis^2 (2 dof, 99.9 %)
    gate_max_m: float = 2.5  # and Euclidean at most this + max_speed_mps * dt, m
    max_speed_mps: float = 16.0  # fastest object the gate admits, m/s
    init_velocity_sigma: float = 8.0  # std of a new track's velocity, m/s
    confirm_hits: int = 2  # updates before a track is confirmed
    confirm_score: float = 0.6  # a detection this confident confirms at birth
    max_coast_s: float = 1.5  # a confirmed track survives this long without updates
    tentative_coast_s: float = 0.3  # a tentative track survives this long without updates
    output_coast_s: float = 0.6  # confirmed tracks are published while updated this recently
    moving_speed_mps: float = 1.0  # faster tracks take their yaw from the velocity
    # two label-compatible tracks whose footprints overlap with a larger IoU are one object
    # tracked twice: the one with fewer updates is dropped (1.0: never)
    overlap_iou: float = 0.1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {self.mode!r}")
        if not 0.0 <= self.min_score <= 1.0 or not 0.0 < self.bev_threshold < 1.0:
            raise ValueError("min_score must be in [0, 1] and bev_threshold in (0, 1)")
        if self.time_jump_s <= 0 or self.max_coast_s <= 0 or self.confirm_hits < 1:
            raise ValueError("time_jump_s, max_coast_s > 0 and confirm_hits >= 1 required")
        if not 0.0 <= self.overlap_iou <= 1.0:
            raise ValueError(f"overlap_iou must be in [0, 1], got {self.overlap_iou}")


def parse_overrides(text: str) -> dict[str, float | int | str | bool]:
    """``"field=value[,field=value]"`` (a bench / CLI option) -> :class:`ObjectsConfig` field
    overrides, each parsed as the type of the field's default. ``ValueError`` names a field
    that does not exist or does not take a scalar."""
    defaults = {f.name: f.default for f in fields(ObjectsConfig)}
    out: dict[str, float | int | str | bool] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = (t.strip() for t in item.partition("="))
        default = defaults.get(key)
        if not sep or not isinstance(default, (bool, int, float, str)):
            raise ValueError(f"{item!r}: not a scalar ObjectsConfig field=value "
                             f"(fields: {sorted(defaults)})")
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"{item!r}: {key} takes true or false")
            out[key] = value.lower() in ("true", "1")
        else:
            out[key] = type(default)(value)
    return out
