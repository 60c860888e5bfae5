"""Camera-rate synthetic sequences for tracking evaluation.

nuScenes annotates key frames at 2 Hz; real cameras run at ~12 Hz. The synthetic generator
(`lss_bev_ros/data`) is a continuous world model, so the same scene (``seed``, scene index) can
be rendered at any rate. This module renders one camera of a scene at ``rate_hz`` and derives
its 2D GT exactly like :mod:`.gt` (near-plane clipped silhouette inside the image), using the
renderer's own per-object visible-pixel counts for the occlusion filter. Instance ids are
stable over the sequence (``<scene>/<object index>``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from lss_bev_ros.detection.gt import GTConfig, GTFrame, category_to_class, project_silhouette


@dataclass
class SequenceFrame:
    """One rendered camera image (H x W x 3 uint8 RGB) at scene time ``t`` (s) and its GT."""

    camera: str
    t: float
    rgb: np.ndarray
    gt: GTFrame


def render_sequence(
    seed: int,
    scene_index: int,
    cameras: Sequence[str],
    rate_hz: float = 10.0,
    duration_s: float = 4.5,
    gt_config: GTConfig | None = None,
    scale: float = 1.0,
) -> Iterator[list[SequenceFrame]]:
    """Yield, per time step, one :class:`SequenceFrame` per camera (a synchronised set).

    The scene is the one ``lss-bev-synth --seed seed`` writes as scene ``scene_index`` (with
    ``duration_s * 2 + 1`` key frames). ``scale`` resizes images and GT boxes.
    """
    import cv2

    from lss_bev_ros.data.render import camera_view, make_snapshot, render_camera
    from lss_bev_ros.data.synthetic import scene_name, scene_world

    cfg = gt_config or GTConfig()
    world = scene_world(seed, scene_index, round(duration_s * 2) + 1)
    name = scene_name(scene_index)
    specs = [world.rig.camera(c) for c in cameras]
    n_steps = round(duration_s * rate_hz) + 1
    for k in range(n_steps):
        t = k / rate_hz
        snap = make_snapshot(world, t)
        frames = []
        for cam, spec in zip(cameras, specs, strict=True):
            view = camera_view(world, spec, t)
            res = render_camera(snap, view)
            size = (int(view.height), int(view.width))
            boxes, cls, inst, depth, occ = [], [], [], [], []
            for m in range(len(snap.boxes)):
                obj = world.objects[int(snap.boxes.index[m])]
                c = category_to_class(obj.category)
                if c is None or res.full_px[m] <= 0:
                    continue
                hidden = 1.0 - float(res.visible_px[m]) / float(res.full_px[m])
                if hidden > cfg.max_occlusion:
                    continue
                corners = view.to_camera(snap.corners[m]).T  # 3 x 8, optical frame
                sil = project_silhouette(corners, view.K, size, cfg.near_m)
                if sil is None or sil[1] < cfg.min_in_image:
                    continue
                (x1, y1), (x2, y2) = sil[0].min(axis=0), sil[0].max(axis=0)
                if x2 - x1 < cfg.min_size_px or y2 - y1 < cfg.min_size_px:
                    continue
                boxes.append((x1, y1, x2, y2))
                cls.append(c)
                inst.append(f"{name}/{int(snap.boxes.index[m])}")
                depth.append(float(np.linalg.norm(corners.mean(axis=1))))
                occ.append(max(0.0, hidden))
            rgb = cv2.cvtColor(res.image, cv2.COLOR_BGR2RGB)
            xyxy = np.array(boxes, dtype=np.float32).reshape(-1, 4)
            if scale != 1.0:
                rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                xyxy = xyxy * scale
                size = rgb.shape[:2]
            gt = GTFrame(camera=cam, sample_data_token="", image_path=None,  # type: ignore[arg-type]
                         image_size=(int(size[0]), int(size[1])), timestamp_us=round(t * 1e6),
                         xyxy=xyxy, cls=np.array(cls, dtype=np.int64), instance=inst,
                         depth=np.array(depth, dtype=np.float32),
                         occlusion=np.array(occ, dtype=np.float32))
            frames.append(SequenceFrame(cam, t, rgb, gt))
        yield frames
