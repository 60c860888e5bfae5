"""Polygon renderer for synthetic camera images (numpy + cv2.fillConvexPoly).

Everything drawn is a planar convex quad in the global frame: the ground (grass, road, sidewalks,
lane markings, all at z = 0) and the six faces of each object box. Quads are transformed to the
optical camera frame, culled against the view frustum, clipped against the near plane
(Sutherland-Hodgman) and a guard band, projected with the intrinsics and filled. Boxes are drawn
back-face culled and sorted far to near (painter's algorithm), so nearer faces occlude farther
ones. An id buffer records which box each pixel shows; it gives the unoccluded fraction of each
box (nuScenes visibility).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from lss_bev_ros.data.world import (
    BOX_FACE_NORMALS,
    BOX_FACES,
    DASH_LENGTH,
    DASH_PERIOD,
    GRASS_BGR,
    MARKING_BGR,
    MARKING_HALF_WIDTH,
    ROAD_BGR,
    SIDEWALK_BGR,
    SKY_BGR,
    Boxes,
    Road,
    SensorSpec,
    World,
)

NEAR_M = 0.05  # near clipping plane, m
DRAW_RANGE_M = 110.0  # boxes farther than this from the camera are not drawn
GROUND_RANGE_M = 220.0  # road drawn this far ahead/behind the ego
AMBIENT = 0.5
DIFFUSE = 0.5
_SHIFT = 4  # sub-pixel bits for cv2.fillConvexPoly
_GUARD_PX = 8000.0  # 2D guard band around the image for very large projected polygons


def box_face_shades(yaws: np.ndarray, sun_dir: np.ndarray) -> np.ndarray:
    """Lambert shade factor per face (M x 6) for boxes with `yaws` (M,) under a sun direction."""
    c, s = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
    n = BOX_FACE_NORMALS[None]  # 1 x 6 x 3
    nx = c * n[..., 0] - s * n[..., 1]
    ny = s * n[..., 0] + c * n[..., 1]
    nz = np.broadcast_to(n[..., 2], nx.shape)
    lam = np.clip(nx * sun_dir[0] + ny * sun_dir[1] + nz * sun_dir[2], 0.0, 1.0)
    return AMBIENT + DIFFUSE * lam


def face_colors(base_bgr: np.ndarray, yaws: np.ndarray, sun_dir: np.ndarray) -> np.ndarray:
    """Shaded face colours (M x 6 x 3, uint8) for boxes of base colours `base_bgr` (M x 3)."""
    shade = box_face_shades(yaws, sun_dir)
    return np.clip(base_bgr[:, None, :] * shade[..., None], 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Snapshot:
    """The world at one instant, in the form the renderer and the lidar use."""

    boxes: Boxes
    corners: np.ndarray  # M x 8 x 3, global
    faces: np.ndarray  # M x 6 x 4 x 3, global
    normals: np.ndarray  # M x 6 x 3, global, outward
    colors: np.ndarray  # M x 6 x 3 uint8 (BGR)
    ground: tuple[tuple[np.ndarray, tuple[int, int, int]], ...]  # (Q x 4 x 3 quads, BGR) layers
    ego_to_global: np.ndarray  # 4 x 4


def make_snapshot(world: World, t: float) -> Snapshot:
    """Evaluate boxes, face geometry and nearby ground quads of `world` at time `t` (s)."""
    boxes = world.boxes(t)
    corners = boxes.corners()
    faces = corners[:, BOX_FACES]  # M x 6 x 4 x 3
    c, s = np.cos(boxes.yaws)[:, None], np.sin(boxes.yaws)[:, None]
    n = BOX_FACE_NORMALS[None]
    normals = np.stack(
        [
            c * n[..., 0] - s * n[..., 1],
            s * n[..., 0] + c * n[..., 1],
            np.broadcast_to(n[..., 2], (*c.shape[:1], 6)),
        ],
        axis=-1,
    )
    base = np.array([world.objects[i].color_bgr for i in boxes.index], dtype=np.float64)
    colors = face_colors(base.reshape(-1, 3), boxes.yaws, world.sun_dir)
    ego = world.ego_pose(t)
    s_ego, _ = world.road.frenet(ego[:2, 3])
    ground = ground_quads(world.road, float(s_ego) - GROUND_RANGE_M, float(s_ego) + GROUND_RANGE_M)
    return Snapshot(boxes, corners, faces, normals, colors, ground, ego)


def _strip(road: Road, s: np.ndarray, d0: float, d1: float) -> np.ndarray:
    """Quads (len(s)-1 x 4 x 3) of the strip d0..d1 between consecutive arc lengths `s`."""
    a0, _ = road.pose(s, d0)
    a1, _ = road.pose(s, d1)
    q = np.stack([a0[:-1], a0[1:], a1[1:], a1[:-1]], axis=1)
    return np.concatenate([q, np.zeros((*q.shape[:2], 1))], axis=-1)


def ground_quads(
    road: Road, s_lo: float, s_hi: float
) -> tuple[tuple[np.ndarray, tuple[int, int, int]], ...]:
    """Road, sidewalk and lane-marking quads (global, z = 0) for arc lengths s_lo..s_hi, in
    drawing order."""
    s = np.arange(s_lo, s_hi + 4.0, 4.0)
    layers: list[tuple[np.ndarray, tuple[int, int, int]]] = []
    hw, kw = road.half_width, road.kerb_half_width
    layers.append((_strip(road, s, -hw, hw), ROAD_BGR))
    sidewalks = np.concatenate([_strip(road, s, hw, kw), _strip(road, s, -kw, -hw)])
    layers.append((sidewalks, SIDEWALK_BGR))
    marks = []
    for off, dashed in road.marking_lines():
        d0, d1 = off - MARKING_HALF_WIDTH, off + MARKING_HALF_WIDTH
        if dashed:
            k0 = np.floor(s_lo / DASH_PERIOD)
            starts = np.arange(k0, np.ceil(s_hi / DASH_PERIOD)) * DASH_PERIOD
            p00, _ = road.pose(starts, d0)
            p01, _ = road.pose(starts + DASH_LENGTH, d0)
            p11, _ = road.pose(starts + DASH_LENGTH, d1)
            p10, _ = road.pose(starts, d1)
            a = np.stack([p00, p01, p11, p10], axis=1)
            marks.append(np.concatenate([a, np.zeros((*a.shape[:2], 1))], axis=-1))
        else:
            marks.append(_strip(road, s, d0, d1))
    layers.append((np.concatenate(marks), MARKING_BGR))
    return tuple(layers)


# ---------------------------------------------------------------------------------------------
# Clipping and projection
# ---------------------------------------------------------------------------------------------
def clip_polygon(poly: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Sutherland-Hodgman: keep the part of convex polygon `poly` (K x D) with normal·p >= offset.

    Returns the clipped polygon (K' x D, K' may be 0).
    """
    dist = poly @ normal - offset
    inside = dist >= 0
    if inside.all():
        return poly
    if not inside.any():
        return poly[:0]
    out = []
    k = len(poly)
    for i in range(k):
        j = (i + 1) % k
        if inside[i]:
            out.append(poly[i])
        if inside[i] != inside[j]:
            a = dist[i] / (dist[i] - dist[j])
            out.append(poly[i] + a * (poly[j] - poly[i]))
    return np.asarray(out)


@dataclass(frozen=True)
class CameraView:
    """A camera at one instant: global → optical-frame rotation/translation and intrinsics."""

    R: np.ndarray  # 3 x 3, global → camera
    t: np.ndarray  # 3, camera = R @ global + t
    K: np.ndarray  # 3 x 3
    width: int
    height: int
    center: np.ndarray  # 3, camera centre in global

    @staticmethod
    def from_pose(cam_to_global: np.ndarray, K: np.ndarray, width: int, height: int) -> CameraView:
        """Build from a 4 x 4 camera → global transform."""
        R = cam_to_global[:3, :3].T
        center = cam_to_global[:3, 3]
        return CameraView(R, -R @ center, np.asarray(K, dtype=np.float64), width, height, center)

    def to_camera(self, pts: np.ndarray) -> np.ndarray:
        """Global points (... x 3) → camera frame (... x 3)."""
        return pts @ self.R.T + self.t

    def project(self, pts_cam: np.ndarray) -> np.ndarray:
        """Camera-frame points (... x 3, z > 0) → pixel coordinates (... x 2)."""
        uvw = pts_cam @ self.K.T
        return uvw[..., :2] / uvw[..., 2:3]

    def frustum_planes(self) -> np.ndarray:
        """Inward normals (5 x 3) and offsets: rows n with n·p >= off, last column = off."""
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        return np.array(
            [
                [0.0, 0.0, 1.0, NEAR_M],
                [fx, 0.0, cx, 0.0],
                [-fx, 0.0, self.width - cx, 0.0],
                [0.0, fy, cy, 0.0],
                [0.0, -fy, self.height - cy, 0.0],
            ]
        )


def camera_view(world: World, cam: SensorSpec, t: float) -> CameraView:
    """The `CameraView` of camera `cam` of `world` at time `t`."""
    assert cam.intrinsic is not None
    return CameraView.from_pose(world.sensor_pose(cam, t), cam.intrinsic, cam.width, cam.height)


def _project_quads(view: CameraView, quads: np.ndarray) -> list[np.ndarray | None]:
    """Camera-space clip + projection of quads (Q x 4 x 3 global) → list of pixel polygons (K x 2)
    or None where nothing is in view."""
    if len(quads) == 0:
        return []
    pc = view.to_camera(quads)  # Q x 4 x 3
    planes = view.frustum_planes()
    side = pc @ planes[:, :3].T - planes[:, 3]  # Q x 4 x 5
    culled = (side < 0).all(axis=1).any(axis=1)  # all corners outside one plane
    out: list[np.ndarray | None] = [None] * len(quads)
    w, h = view.width, view.height
    for i in np.flatnonzero(~culled):
        poly = pc[i]
        if (poly[:, 2] < NEAR_M).any():
            poly = clip_polygon(poly, np.array([0.0, 0.0, 1.0]), NEAR_M)
            if len(poly) < 3:
                continue
        uv = view.project(poly)
        if np.abs(uv).max() > _GUARD_PX:
            for nrm, off in (
                ((1.0, 0.0), -_GUARD_PX),
                ((-1.0, 0.0), -(w + _GUARD_PX)),
                ((0.0, 1.0), -_GUARD_PX),
                ((0.0, -1.0), -(h + _GUARD_PX)),
            ):
                uv = clip_polygon(uv, np.asarray(nrm), off)
                if len(uv) < 3:
                    break
            if len(uv) < 3:
                continue
        out[i] = uv
    return out


def _fill(img: np.ndarray, uv: np.ndarray, color: tuple[int, ...] | int) -> None:
    pts = np.round(uv * (1 << _SHIFT)).astype(np.int32)
    cv2.fillConvexPoly(img, pts, color, lineType=cv2.LINE_8, shift=_SHIFT)


def polygon_area_in_image(uv: np.ndarray, width: int, height: int) -> float:
    """Area (px²) of the part of convex polygon `uv` (K x 2) inside the image rectangle."""
    for nrm, off in (
        ((1.0, 0.0), 0.0),
        ((-1.0, 0.0), -float(width)),
        ((0.0, 1.0), 0.0),
        ((0.0, -1.0), -float(height)),
    ):
        uv = clip_polygon(uv, np.asarray(nrm), off)
        if len(uv) < 3:
            return 0.0
    x, y = uv[:, 0], uv[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@lru_cache(maxsize=4)
def _sky(height: int, width: int) -> np.ndarray:
    """Sky background (H x W x 3 uint8), a vertical gradient."""
    top = np.array([200, 150, 100], dtype=np.float64)
    bottom = np.asarray(SKY_BGR, dtype=np.float64)
    a = np.linspace(0.0, 1.0, height)[:, None]
    col = (top * (1 - a) + bottom * a).astype(np.uint8)
    img = np.broadcast_to(col[:, None, :], (height, width, 3)).copy()
    img.setflags(write=False)
    return img


@dataclass
class RenderResult:
    """One camera image and what each box looks like in it."""

    image: np.ndarray  # H x W x 3 uint8 (BGR)
    ids: np.ndarray  # H x W int16: 0 background, i + 1 = box i of the snapshot
    visible_px: np.ndarray  # M, unoccluded pixels per box
    full_px: np.ndarray  # M, projected (unoccluded + occluded) area per box, px²


def render_camera(snap: Snapshot, view: CameraView) -> RenderResult:
    """Render ground and boxes of `snap` seen by `view`."""
    H, W = view.height, view.width
    img = _sky(H, W).copy()
    ids = np.zeros((H, W), dtype=np.int16)
    # Ground: a large grass square around the camera, then road layers on top.
    c = view.center
    r = 1500.0
    grass = np.array(
        [
            [
                [c[0] - r, c[1] - r, 0.0],
                [c[0] + r, c[1] - r, 0.0],
                [c[0] + r, c[1] + r, 0.0],
                [c[0] - r, c[1] + r, 0.0],
            ]
        ]
    )
    for uv in _project_quads(view, grass):
        if uv is not None:
            _fill(img, uv, GRASS_BGR)
    for quads, color in snap.ground:
        for uv in _project_quads(view, quads):
            if uv is not None:
                _fill(img, uv, color)

    M = len(snap.boxes)
    visible = np.zeros(M)
    full = np.zeros(M)
    if M:
        dist_box = np.linalg.norm(snap.boxes.centers - c, axis=1)
        near = np.flatnonzero(dist_box < DRAW_RANGE_M)
        faces = snap.faces[near].reshape(-1, 4, 3)
        normals = snap.normals[near].reshape(-1, 3)
        centres = faces.mean(axis=1)
        facing = np.einsum("fk,fk->f", normals, c - centres) > 1e-9
        fidx = np.flatnonzero(facing)
        order = fidx[np.argsort(-np.linalg.norm(centres[fidx] - c, axis=1), kind="stable")]
        polys = _project_quads(view, faces[order])
        colors = snap.colors[near].reshape(-1, 3)
        for f, uv in zip(order, polys, strict=True):
            if uv is None:
                continue
            box = int(near[f // 6])
            _fill(img, uv, tuple(int(v) for v in colors[f]))
            _fill(ids, uv, box + 1)
            full[box] += polygon_area_in_image(uv, W, H)
        counts = np.bincount(ids.ravel(), minlength=M + 1)
        visible = counts[1 : M + 1].astype(np.float64)
    return RenderResult(img, ids, visible, full)


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of a BGR image."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
