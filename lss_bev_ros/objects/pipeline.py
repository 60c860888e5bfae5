"""One frame of 2D detections + BEV grid + rig calibration -> 3D objects, merged and tracked.

``ObjectPipeline.step`` is the single entry point the objects node and the offline tools feed:

1. validate input (unknown cameras, NaN / negative / outside-image boxes, unknown classes, grid
   shape): bad items are dropped and counted in ``ObjectsFrame.issues``;
2. lift each detection along its viewing ray (:mod:`lss_bev_ros.objects.lift`: ground plane,
   class height, BEV ray range, fused by inverse variance), refine position / footprint / heading
   with the BEV blob it hits;
3. merge the same object seen by several cameras (Mahalanobis gate + union), add BEV blobs no
   detection explains (low score);
4. track in ``map`` (pose given) or ``base_link`` (:class:`~lss_bev_ros.objects.tracker.
   GroundTracker`).

``config.mode`` selects the evidence (:data:`~lss_bev_ros.objects.config.MODES`): ``geometry``
(2D + ground plane only), ``bev`` (blobs only, every blob a car), ``fused``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from lss_bev_ros.calibration import CameraCalibration, RigCalibration
from lss_bev_ros.conversions import GridSpec
from lss_bev_ros.detection.types import Detections
from lss_bev_ros.objects.classes import nuscenes_name, prior
from lss_bev_ros.objects.config import ObjectsConfig
from lss_bev_ros.objects.lift import Blob, BlobMap, Peak, find_blobs, find_peaks, lift_box
from lss_bev_ros.objects.tracker import GroundTracker, nearest_branch, wrap_angle
from lss_bev_ros.objects.types import Object3D, ObjectsFrame, Pose2D


@dataclass(frozen=True)
class _Candidate:
    """A lifted detection before the cross-camera merge."""

    obj: Object3D
    blob: int  # blob label used (0 = none)
    single_blob: bool  # the blob looks like one object of this class


def _fuse_gaussians(means: list[np.ndarray], covs: list[np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Information-weighted fusion of 2D Gaussians -> (mean 2, cov 2 x 2)."""
    info = sum(np.linalg.inv(c) for c in covs)
    cov = np.linalg.inv(info)
    mean = cov @ sum(np.linalg.inv(c) @ m for m, c in zip(means, covs, strict=True))
    return mean, 0.5 * (cov + cov.T)


class ObjectPipeline:
    """See the module docstring. Not thread-safe; one instance per stream."""

    def __init__(self, rig: RigCalibration, grid: GridSpec, class_names: Sequence[str],
                 config: ObjectsConfig | None = None) -> None:
        self.config = config or ObjectsConfig()
        self.grid = grid
        self.class_names = tuple(class_names)
        self._labels = tuple(nuscenes_name(c) for c in self.class_names)
        self.tracker = GroundTracker(self.config)
        self.rig = rig
        self._cams: dict[str, CameraCalibration] = {}
        self.set_rig(rig)

    def set_rig(self, rig: RigCalibration) -> None:
        """Replace the calibration (e.g. from camera_info / tf); tracks are kept."""
        self.rig = rig
        self._cams = {c.name: c for c in rig.cameras}

    def reset(self) -> None:
        """Drop all tracks."""
        self.tracker.reset()

    # ------------------------------------------------------------------ input validation
    def _valid_boxes(self, cam: CameraCalibration, det: Detections, issues: Counter
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(xyxy K x 4 in calibration pixels, conf K, cls K) of the usable boxes."""
        xyxy = np.asarray(det.xyxy, dtype=np.float64).reshape(-1, 4)
        conf = np.asarray(det.conf, dtype=np.float64)
        cls = np.asarray(det.cls, dtype=np.int64)
        h, w = det.image_size
        if (h, w) != (cam.height, cam.width):
            if h <= 0 or w <= 0:
                issues["bad_image_size"] += len(xyxy)
                return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
            issues["image_size_mismatch"] += 1
            xyxy = xyxy * np.array([cam.width / w, cam.height / h] * 2)
        ok = np.ones(len(xyxy), dtype=bool)
        finite = np.isfinite(xyxy).all(1) & np.isfinite(conf)
        issues["nan_box"] += int((~finite).sum())
        ok &= finite
        xyxy = np.where(finite[:, None], xyxy, 0.0)
        neg = ok & ((xyxy < 0).any(1) | (xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1]))
        # a box reaching slightly below 0 is clipped, not dropped (detectors do that)
        slight = neg & (xyxy > -cam.width * 0.02).all(1) & (xyxy[:, 2] > xyxy[:, 0]) & (
            xyxy[:, 3] > xyxy[:, 1])
        issues["negative_box"] += int((neg & ~slight).sum())
        ok &= ~(neg & ~slight)
        outside = ok & ((xyxy[:, 0] >= cam.width) | (xyxy[:, 1] >= cam.height)
                        | (xyxy[:, 2] > cam.width * 1.02) | (xyxy[:, 3] > cam.height * 1.02))
        issues["box_outside_image"] += int(outside.sum())
        ok &= ~outside
        bad_cls = ok & ((cls < 0) | (cls >= len(self.class_names)))
        issues["unknown_class"] += int(bad_cls.sum())
        ok &= ~bad_cls
        ok &= conf >= self.config.min_score
        xyxy = np.clip(xyxy[ok], 0.0, [cam.width, cam.height, cam.width, cam.height])
        return xyxy, conf[ok], cls[ok]

    def _valid_grid(self, probability: np.ndarray | None, known: np.ndarray | None,
                    issues: Counter) -> tuple[np.ndarray | None, np.ndarray | None]:
        if probability is None:
            issues["no_grid"] += 1
            return None, None
        p = np.asarray(probability, dtype=np.float32)
        if p.shape != (self.grid.nx, self.grid.ny):
            issues["grid_shape"] += 1
            return None, None
        if not np.isfinite(p).all():
            issues["nan_grid"] += 1
            p = np.nan_to_num(p, nan=0.0, posinf=1.0, neginf=0.0)
        k = None
        if known is not None:
            k = np.asarray(known, dtype=bool)
            if k.shape != p.shape:
                issues["grid_shape"] += 1
                k = None
        return np.clip(p, 0.0, 1.0), k

    # ------------------------------------------------------------------ lifting
    def _lift_camera(self, cam: CameraCalibration, xyxy: np.ndarray, conf: np.ndarray,
                     cls: np.ndarray, prob: np.ndarray | None, blobs: BlobMap | None,
                     use_bev: bool, issues: Counter) -> list[_Candidate]:
        cfg = self.config
        out = []
        for box, c, k in zip(xyxy, conf, cls, strict=True):
            label = self._labels[int(k)]
            pr = prior(label)
            bev_here = use_bev and label in cfg.bev_classes  # the grid segments vehicles only
            lift = lift_box(cam, box, pr, prob, blobs, self.grid, cfg, bev_here)
            if lift is None:
                issues["no_range"] += 1
                continue
            pos, cov = lift.position, lift.covariance
            length, width, height = pr.length, pr.width, pr.height
            yaw = 0.0  # unobserved: parallel to the ego (road direction); a track fixes it
            yaw_observed, yaw_var = False, float("nan")
            blob_ok = False
            blob = self._blob_at(blobs, lift.blob, pos) if bev_here and blobs else None
            if blob is not None:
                blob_ok = blob.area <= cfg.blob_max_area_ratio * pr.length * pr.width
                if blob_ok:
                    bcov = 0.25 * blob.cov + np.eye(2) * cfg.blob_position_sigma_m**2
                    d = blob.centre - pos
                    if cfg.fuse_blob_position and float(
                            d @ np.linalg.solve(cov + bcov, d)) <= cfg.merge_chi2:
                        pos, cov = _fuse_gaussians([pos, blob.centre], [cov, bcov])
                    if blob.elongation >= cfg.blob_min_elongation and label != "pedestrian":
                        yaw, yaw_observed = blob.yaw, True
                        yaw_var = float((0.5 / blob.elongation) ** 2)
                        length = float(np.clip(0.6 * pr.length + 0.4 * blob.length,
                                               0.8 * pr.length, 1.3 * pr.length))
                        width = float(np.clip(0.6 * pr.width + 0.4 * blob.width,
                                              0.8 * pr.width, 1.3 * pr.width))
            support = lift.bev_peak if bev_here else 0.0
            score = float(c) * (0.7 + 0.3 * support) if bev_here else float(c)
            obj = Object3D(
                float(pos[0]), float(pos[1]), cfg.ground_z + 0.5 * height, length, width,
                height, yaw, yaw_observed, label, float(c), score, cov,
                cameras=(cam.name,), yaw_variance=yaw_var,
                source="fused" if use_bev else "geometry",
            )
            out.append(_Candidate(obj, blob.label if blob is not None else 0, blob_ok))
        return out

    def _blob_at(self, blobs: BlobMap, label: int, pos: np.ndarray) -> Blob | None:
        if label > 0 and label in blobs.blobs:
            return blobs.blobs[label]
        ix, iy, inside = self.grid.cell_of(np.array([pos[0]]), np.array([pos[1]]))
        if inside[0]:
            lab = int(blobs.labels[ix[0], iy[0]])
            return blobs.blobs.get(lab)
        return None

    def _blob_objects(self, blobs: BlobMap, prob: np.ndarray, used: set[int],
                      score_scale: float) -> list[Object3D]:
        """Objects (class car) from the blobs not in ``used``: a car-sized blob is one object;
        a larger blob (cars side by side merge in a coarse grid) gives one object per peak of
        the footprint-smoothed probability."""
        cfg = self.config
        pr = prior("car")
        car_area = pr.length * pr.width
        out = []
        peaks_by_blob: dict[int, list[Peak]] = {}
        for pk in find_peaks(prob, blobs, self.grid, car_area, cfg.blob_max_area_ratio):
            peaks_by_blob.setdefault(pk.blob, []).append(pk)
        for lab, b in blobs.blobs.items():
            if lab in used or b.area < 0.25 * car_area:
                continue
            if not peaks_by_blob.get(lab):
                parts = [(b.centre, 0.25 * b.cov + np.eye(2) * 0.5**2, b.yaw, b.elongation,
                          b.mean_p, b.length, b.width)]
            else:
                row = b.elongation >= 2.0  # a row of cars: they are aligned with the row
                parts = [(pk.centre, 0.25 * pk.cov + np.eye(2) * 0.5**2,
                          b.yaw if row else pk.yaw, max(pk.elongation, b.elongation if row
                                                        else 0.0), pk.score, pr.length,
                          pr.width) for pk in peaks_by_blob[lab]]
            for c, cov, yaw, el, score, length, width in parts:
                observed = el >= cfg.blob_min_elongation
                out.append(Object3D(
                    float(c[0]), float(c[1]), cfg.ground_z + 0.5 * pr.height,
                    float(np.clip(length, 0.8 * pr.length, 1.3 * pr.length)),
                    float(np.clip(width, 0.8 * pr.width, 1.3 * pr.width)),
                    pr.height, yaw if observed else 0.0, observed, "car", float(score),
                    float(np.clip(score_scale * score, 0.0, 1.0)), cov,
                    yaw_variance=float((0.5 / el) ** 2) if observed else float("nan"),
                    source="bev",
                ))
        return out

    # ------------------------------------------------------------------ merging
    def _merge(self, cands: list[_Candidate]) -> list[Object3D]:
        """Union of candidates from different cameras that are one object."""
        cfg = self.config
        n = len(cands)
        parent = list(range(n))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        vehicles = {"car", "truck", "bus"}
        for i in range(n):
            a = cands[i]
            for j in range(i + 1, n):
                b = cands[j]
                if set(a.obj.cameras) & set(b.obj.cameras):
                    continue
                la, lb = a.obj.label, b.obj.label
                if la != lb and not (la in vehicles and lb in vehicles):
                    continue
                same_blob = a.single_blob and b.single_blob and a.blob == b.blob and a.blob > 0
                d = a.obj.position - b.obj.position
                dist = float(np.hypot(*d))
                s = a.obj.position_covariance + b.obj.position_covariance
                m2 = float(d @ np.linalg.solve(s, d))
                if same_blob or (m2 <= cfg.merge_chi2 and dist <= cfg.merge_max_m):
                    parent[find(i)] = find(j)
        groups: dict[int, list[int]] = {}
        for i in range(n):
            groups.setdefault(find(i), []).append(i)
        out = []
        for idx in groups.values():
            objs = [cands[i].obj for i in idx]
            if len(objs) == 1:
                out.append(objs[0])
                continue
            mean, cov = _fuse_gaussians([o.position for o in objs],
                                        [o.position_covariance for o in objs])
            best = max(objs, key=lambda o: o.existence_probability)
            yaw_src = [o for o in objs if o.yaw_observed]
            yaw_o = min(yaw_src, key=lambda o: o.yaw_variance) if yaw_src else best
            cams = tuple(sorted({c for o in objs for c in o.cameras}))
            score = 1.0 - float(np.prod([1 - o.existence_probability for o in objs]))
            out.append(replace(
                best, x=float(mean[0]), y=float(mean[1]), position_covariance=cov,
                yaw=yaw_o.yaw, yaw_observed=yaw_o.yaw_observed, yaw_variance=yaw_o.yaw_variance,
                length=yaw_o.length, width=yaw_o.width, cameras=cams,
                existence_probability=min(score, 0.5 * (1 + best.existence_probability)),
            ))
        return out

    # ------------------------------------------------------------------ frame
    def detect(self, detections: Mapping[str, Detections], probability: np.ndarray | None,
               known: np.ndarray | None, issues: Counter) -> list[Object3D]:
        """Objects of one frame in base_link (untracked); counts bad input in ``issues``."""
        cfg = self.config
        prob, known_v = self._valid_grid(probability, known, issues)
        use_bev = cfg.mode != "geometry" and prob is not None
        blobs = find_blobs(prob, self.grid, cfg, known_v) if use_bev and prob is not None else None
        if cfg.mode == "bev":
            if blobs is None or prob is None:
                return []
            return self._blob_objects(blobs, prob, set(), 1.0)
        cands: list[_Candidate] = []
        for name, det in detections.items():
            cam = self._cams.get(name)
            if cam is None:
                issues["unknown_camera"] += 1
                continue
            if det is None:
                continue
            xyxy, conf, cls = self._valid_boxes(cam, det, issues)
            cands += self._lift_camera(cam, xyxy, conf, cls, prob, blobs, use_bev, issues)
        objs = self._merge(cands)
        if blobs is not None and prob is not None and cfg.bev_only_score > 0:
            used = {c.blob for c in cands if c.blob > 0}
            extra = self._blob_objects(blobs, prob, used, cfg.bev_only_score)
            # a blob piece near a detection is that detection
            objs += [e for e in extra
                     if all(np.hypot(*(e.position - o.position)) > cfg.merge_max_m for o in objs)]
        return objs

    def step(self, stamp: float, detections: Mapping[str, Detections],
             probability: np.ndarray | None, known: np.ndarray | None,
             pose: Pose2D | None) -> ObjectsFrame:
        """One synchronised frame -> :class:`ObjectsFrame` (see the module docstring).

        ``detections``: camera name -> Detections (pixels of the original image, class indices
        into ``class_names``); ``probability`` / ``known``: nx x ny arrays [ix, iy] of the BEV
        grid or None; ``pose``: map -> base_link or None (then tracking in base_link).
        """
        cfg = self.config
        issues: Counter = Counter()
        t0 = time.perf_counter()
        last = self.tracker.stamp
        if last is not None and stamp < last - cfg.time_jump_s:
            issues["time_jump"] += 1
            self.tracker.reset()
        detected = self.detect(detections, probability, known, issues)
        t1 = time.perf_counter()
        if pose is not None:
            rot = pose.rotation
            meas = [replace(o, x=float(p[0]), y=float(p[1]),
                            position_covariance=rot @ o.position_covariance @ rot.T,
                            yaw=wrap_angle(o.yaw + pose.yaw))
                    for o, p in zip(detected, pose.to_map(
                        np.array([o.position for o in detected]).reshape(-1, 2)), strict=True)]
            frame = "map"
        else:
            rot = np.eye(2)
            meas = list(detected)
            frame = "base_link"
        idx = self.tracker.step(stamp, meas)
        # detections take the ground velocity (and moving heading) of the track they updated;
        # of a track that does not move, the front (their blob gives the axis only)
        out_det = []
        for o, i in zip(detected, idx, strict=True):
            if i < 0:
                out_det.append(o)
                continue
            t = self.tracker.tracks[i]
            o2 = self.tracker.with_track_velocity(o, t, rot.T)
            track_yaw = wrap_angle(t.yaw - (pose.yaw if pose is not None else 0.0))  # det. frame
            if self.tracker.is_moving(t):
                o2 = replace(o2, yaw=track_yaw, yaw_observed=True)
            elif o.yaw_observed and t.yaw_observed:  # the blob's axis, the track's front
                o2 = replace(o2, yaw=nearest_branch(o.yaw, track_yaw))
            out_det.append(o2)
        tracked = self.tracker.outputs(stamp)
        t2 = time.perf_counter()
        return ObjectsFrame(
            float(stamp), out_det, tracked, frame, {k: v for k, v in issues.items() if v},
            {"lift": (t1 - t0) * 1e3, "track": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3},
        )
