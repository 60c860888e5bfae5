"""The one world model behind a synthetic scene: road, ego trajectory, objects and sensor rig.

The renderer (`render.py`), the lidar ray caster (`lidar.py`) and the nuScenes annotations
(`synthetic.py`) all query the same `World`, so pixels, points and boxes agree by construction.

Frames follow nuScenes: `global` (flat ground at z = 0, metres), `ego` (x forward, y left, z up,
origin on the ground), sensor frames given by a camera→ego / lidar→ego `SensorSpec`; camera frames
are optical (z forward, x right, y down). Times are seconds from the scene start.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

CAMERA_CHANNELS: tuple[str, ...] = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)
LIDAR_CHANNEL = "LIDAR_TOP"
IMAGE_WIDTH_PX = 1600
IMAGE_HEIGHT_PX = 900

# Nominal rig, close to the nuScenes vehicles: (channel, [x, y, z] m in ego, yaw deg, fx px).
_NOMINAL_CAMERAS: tuple[tuple[str, tuple[float, float, float], float, float], ...] = (
    ("CAM_FRONT", (1.70, 0.016, 1.51), 0.0, 1266.0),
    ("CAM_FRONT_RIGHT", (1.55, -0.493, 1.50), -55.0, 1260.0),
    ("CAM_FRONT_LEFT", (1.52, 0.495, 1.51), 55.0, 1257.0),
    ("CAM_BACK", (0.028, 0.003, 1.58), 180.0, 1262.0),
    ("CAM_BACK_LEFT", (1.04, 0.485, 1.59), 110.0, 1256.0),
    ("CAM_BACK_RIGHT", (1.01, -0.481, 1.56), -110.0, 1259.0),
)
_LIDAR_TRANSLATION = (0.944, 0.0, 1.84)
_LIDAR_YAW_DEG = -90.0  # nuScenes LIDAR_TOP: x right, y forward, z up

# Optical frame (z forward, x right, y down) → ego-like frame (x forward, y left, z up).
OPTICAL_TO_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

# Category → (base colour BGR, size ranges (w, l, h) in m, lidar intensity).
CATEGORY_STYLE: dict[str, tuple[tuple[int, int, int], tuple[tuple[float, float], ...], float]] = {
    "vehicle.car": ((205, 85, 25), ((1.7, 2.0), (4.0, 4.9), (1.45, 1.8)), 45.0),
    "vehicle.truck": ((25, 125, 235), ((2.3, 2.6), (6.0, 9.5), (2.8, 3.6)), 60.0),
    "vehicle.bus.rigid": ((20, 210, 230), ((2.8, 3.0), (10.5, 12.0), (3.1, 3.4)), 55.0),
    "human.pedestrian.adult": ((150, 20, 210), ((0.55, 0.75), (0.55, 0.85), (1.6, 1.9)), 15.0),
}
VEHICLE_CATEGORIES = ("vehicle.car", "vehicle.truck", "vehicle.bus.rigid")

# Ground appearance (BGR) and lidar intensity.
SKY_BGR = (235, 205, 170)
GRASS_BGR = (70, 135, 80)
ROAD_BGR = (92, 92, 96)
SIDEWALK_BGR = (150, 155, 160)
MARKING_BGR = (235, 235, 235)
GROUND_INTENSITY = {"grass": 22.0, "road": 8.0, "sidewalk": 30.0, "marking": 90.0}


# ---------------------------------------------------------------------------------------------
# Rotations
# ---------------------------------------------------------------------------------------------
def rot_z(yaw: float) -> np.ndarray:
    """3 x 3 rotation about z by `yaw` radians."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(angle: float) -> np.ndarray:
    """3 x 3 rotation about y by `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(angle: float) -> np.ndarray:
    """3 x 3 rotation about x by `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def quat_from_matrix(R: np.ndarray) -> list[float]:
    """Unit quaternion [w, x, y, z] (nuScenes order, w >= 0) of a 3 x 3 rotation matrix."""
    m = np.asarray(R, dtype=np.float64)
    tr = np.trace(m)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    qa = np.asarray(q) / np.linalg.norm(q)
    if qa[0] < 0:
        qa = -qa
    return [float(v) for v in qa]


def yaw_quat(yaw: float) -> list[float]:
    """Quaternion [w, x, y, z] of a rotation about z by `yaw` radians."""
    return [float(np.cos(yaw / 2.0)), 0.0, 0.0, float(np.sin(yaw / 2.0))]


def make_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4 x 4 homogeneous transform from a 3 x 3 rotation and a 3-vector translation."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


# ---------------------------------------------------------------------------------------------
# Sensor rig
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SensorSpec:
    """A sensor mounted on the ego: `rotation` (3 x 3) and `translation` (m) map sensor → ego."""

    channel: str
    modality: str  # "camera" | "lidar"
    rotation: np.ndarray
    translation: np.ndarray
    intrinsic: np.ndarray | None = None  # 3 x 3 (cameras)
    width: int = 0
    height: int = 0

    @property
    def sensor_to_ego(self) -> np.ndarray:
        """4 x 4 sensor → ego transform."""
        return make_transform(self.rotation, self.translation)


@dataclass(frozen=True)
class LidarModel:
    """Spinning lidar like the nuScenes HDL-32E: 32 rings, elevations in degrees."""

    n_rings: int = 32
    elev_min_deg: float = -30.67
    elev_max_deg: float = 10.67
    azimuth_step_deg: float = 0.4
    max_range_m: float = 70.0

    def ray_directions(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit ray directions in the lidar frame (R x 3) and ring index (R,), ring 0 lowest."""
        elev = np.deg2rad(np.linspace(self.elev_min_deg, self.elev_max_deg, self.n_rings))
        az = np.deg2rad(np.arange(0.0, 360.0, self.azimuth_step_deg))
        E, A = np.meshgrid(elev, az, indexing="ij")  # rings x azimuths
        dirs = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], axis=-1)
        rings = np.broadcast_to(np.arange(self.n_rings)[:, None], E.shape)
        return dirs.reshape(-1, 3), rings.reshape(-1).astype(np.float32)


@dataclass(frozen=True)
class Rig:
    """Six cameras and LIDAR_TOP."""

    cameras: tuple[SensorSpec, ...]
    lidar: SensorSpec
    lidar_model: LidarModel = field(default_factory=LidarModel)

    def camera(self, channel: str) -> SensorSpec:
        """The camera with this channel name."""
        for cam in self.cameras:
            if cam.channel == channel:
                return cam
        raise KeyError(channel)


def camera_rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Optical camera → ego rotation (3 x 3) for a camera yawed left by `yaw` radians.

    `pitch` > 0 tilts the optical axis down, `roll` rotates about the optical axis.
    """
    return rot_z(yaw) @ rot_y(pitch) @ OPTICAL_TO_BODY @ rot_z(roll)


def nominal_rig(rng: np.random.Generator | None = None, jitter: float = 1.0) -> Rig:
    """nuScenes-like rig; with `rng`, each calibration is perturbed slightly (per log).

    `jitter` scales the perturbation: ~1 deg yaw, 0.5 deg pitch/roll, 2 cm, 0.7 % focal length.
    """
    cams = []
    for channel, t, yaw_deg, fx in _NOMINAL_CAMERAS:
        d_yaw = d_pitch = d_roll = 0.0
        dt = np.zeros(3)
        dfx = 0.0
        if rng is not None:
            d_yaw = np.deg2rad(rng.uniform(-1.0, 1.0)) * jitter
            d_pitch = np.deg2rad(rng.uniform(-0.5, 0.5)) * jitter
            d_roll = np.deg2rad(rng.uniform(-0.5, 0.5)) * jitter
            dt = rng.uniform(-0.02, 0.02, size=3) * jitter
            dfx = rng.uniform(-0.007, 0.007) * fx * jitter
        f = fx + dfx
        K = np.array(
            [[f, 0.0, IMAGE_WIDTH_PX / 2.0 + 8.0], [0.0, f, IMAGE_HEIGHT_PX / 2.0 + 2.0], [0, 0, 1]]
        )
        R = camera_rotation(np.deg2rad(yaw_deg) + d_yaw, d_pitch, d_roll)
        cams.append(
            SensorSpec(channel, "camera", R, np.asarray(t) + dt, K, IMAGE_WIDTH_PX, IMAGE_HEIGHT_PX)
        )
    lidar = SensorSpec(
        LIDAR_CHANNEL, "lidar", rot_z(np.deg2rad(_LIDAR_YAW_DEG)), np.asarray(_LIDAR_TRANSLATION)
    )
    return Rig(tuple(cams), lidar)


# ---------------------------------------------------------------------------------------------
# Road
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Road:
    """A road whose centreline is a circular arc (or a line when `curvature` == 0).

    Arc length `s` (m) runs along the centreline, `d` (m) is the lateral offset, left positive.
    Two lanes each way (right-hand traffic: d < 0 is our direction), sidewalks on both sides.
    """

    origin: tuple[float, float]
    heading: float  # rad, at s = 0
    curvature: float  # 1/m
    lane_width: float = 3.5
    n_lanes_each_way: int = 2
    parking_width: float = 2.5
    sidewalk_width: float = 3.0

    @property
    def lanes_half_width(self) -> float:
        """Half the width of the driving lanes, m."""
        return self.lane_width * self.n_lanes_each_way

    @property
    def half_width(self) -> float:
        """Half the paved width (lanes + parking strip), m."""
        return self.lanes_half_width + self.parking_width

    @property
    def kerb_half_width(self) -> float:
        """Half the width up to the outer sidewalk edge, m."""
        return self.half_width + self.sidewalk_width

    def lane_offset(self, lane: int) -> float:
        """Lateral offset of lane centre; lanes -1, -2 are ours (right), +1, +2 oncoming."""
        return float(np.sign(lane) * (abs(lane) - 0.5) * self.lane_width)

    def pose(
        self, s: np.ndarray | float, d: np.ndarray | float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Global xy (... x 2) and heading (...) of the point at arc length `s`, offset `d`."""
        s = np.asarray(s, dtype=np.float64)
        d = np.asarray(d, dtype=np.float64)
        theta = self.heading + self.curvature * s
        k = self.curvature
        if abs(k) < 1e-9:
            x = self.origin[0] + s * np.cos(self.heading)
            y = self.origin[1] + s * np.sin(self.heading)
        else:
            x = self.origin[0] + (np.sin(theta) - np.sin(self.heading)) / k
            y = self.origin[1] - (np.cos(theta) - np.cos(self.heading)) / k
        x = x - d * np.sin(theta)
        y = y + d * np.cos(theta)
        return np.stack(np.broadcast_arrays(x, y), axis=-1), np.broadcast_to(theta, x.shape)

    def frenet(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arc length `s` and lateral offset `d` of global points `xy` (... x 2)."""
        xy = np.asarray(xy, dtype=np.float64)
        k = self.curvature
        h = self.heading
        if abs(k) < 1e-9:
            dx = xy[..., 0] - self.origin[0]
            dy = xy[..., 1] - self.origin[1]
            return dx * np.cos(h) + dy * np.sin(h), -dx * np.sin(h) + dy * np.cos(h)
        cx = self.origin[0] - np.sin(h) / k
        cy = self.origin[1] + np.cos(h) / k
        ux = (xy[..., 0] - cx) * k
        uy = (xy[..., 1] - cy) * k
        theta = np.arctan2(ux, -uy)
        s = (np.mod(theta - h + np.pi, 2 * np.pi) - np.pi) / k
        d = (1.0 - np.hypot(ux, uy)) / k
        return s, d

    def surface(self, xy: np.ndarray) -> np.ndarray:
        """Ground class per point (... ): 0 grass, 1 road, 2 sidewalk, 3 lane marking."""
        s, d = self.frenet(xy)
        out = np.zeros(s.shape, dtype=np.int8)
        ad = np.abs(d)
        out[ad <= self.kerb_half_width] = 2
        out[ad <= self.half_width] = 1
        for off, dashed in self.marking_lines():
            on = np.abs(d - off) <= MARKING_HALF_WIDTH
            if dashed:
                on &= np.mod(s, DASH_PERIOD) < DASH_LENGTH
            out[on] = 3
        return out

    def marking_lines(self) -> list[tuple[float, bool]]:
        """Lane marking lateral offsets and whether each is dashed."""
        edge = self.lanes_half_width + 0.15
        lines: list[tuple[float, bool]] = [(-edge, False), (edge, False)]
        lines += [(-0.12, False), (0.12, False)]  # double centre line
        for i in range(1, self.n_lanes_each_way):
            lines += [(i * self.lane_width, True), (-i * self.lane_width, True)]
        return lines


MARKING_HALF_WIDTH = 0.08
DASH_PERIOD = 9.0
DASH_LENGTH = 3.0


# ---------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorldObject:
    """One annotated object. It follows the road (`s0`, `d`, `speed`, `direction`) or is static
    (`xy`, `yaw`). `size` is (w, l, h) in m as in nuScenes."""

    category: str
    size: tuple[float, float, float]
    color_bgr: tuple[int, int, int]
    attribute: str
    s0: float = 0.0
    d: float = 0.0
    speed: float = 0.0  # m/s along the road in `direction`
    direction: int = 1  # +1 with increasing s, -1 against
    static_xy: tuple[float, float] | None = None
    static_yaw: float = 0.0


@dataclass(frozen=True)
class Boxes:
    """Object boxes at one instant in the global frame (M objects)."""

    centers: np.ndarray  # M x 3, m
    sizes: np.ndarray  # M x 3, (w, l, h) m
    yaws: np.ndarray  # M, rad
    index: np.ndarray  # M, index into World.objects

    def __len__(self) -> int:
        return int(self.centers.shape[0])

    def corners(self) -> np.ndarray:
        """M x 8 x 3 corners in the nuScenes `Box.corners` order."""
        w, length, h = self.sizes[:, 0:1], self.sizes[:, 1:2], self.sizes[:, 2:3]
        xs = length / 2 * np.array([1, 1, 1, 1, -1, -1, -1, -1])
        ys = w / 2 * np.array([1, -1, -1, 1, 1, -1, -1, 1])
        zs = h / 2 * np.array([1, 1, -1, -1, 1, 1, -1, -1])
        c, s = np.cos(self.yaws)[:, None], np.sin(self.yaws)[:, None]
        x = c * xs - s * ys + self.centers[:, 0:1]
        y = s * xs + c * ys + self.centers[:, 1:2]
        z = zs + self.centers[:, 2:3]
        return np.stack([x, y, z], axis=-1)


# Box faces as corner indices (counter-clockwise seen from outside) with outward normals in the
# box frame: front (+x), back (-x), left (+y), right (-y), top (+z), bottom (-z).
BOX_FACES = np.array(
    [[0, 1, 2, 3], [4, 7, 6, 5], [0, 3, 7, 4], [1, 5, 6, 2], [0, 4, 5, 1], [3, 2, 6, 7]]
)
BOX_FACE_NORMALS = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64
)
GROUND_CLEARANCE_M = 0.02  # box bottoms float 2 cm above the ground: ground points stay outside


@dataclass(frozen=True)
class World:
    """Everything in one synthetic scene."""

    road: Road
    rig: Rig
    objects: tuple[WorldObject, ...]
    ego_s0: float
    ego_lane_d: float
    ego_speed: float  # m/s
    sun_dir: np.ndarray  # unit 3-vector towards the sun, global
    duration_s: float

    def ego_pose(self, t: float) -> np.ndarray:
        """4 x 4 ego → global transform at time `t` (s)."""
        xy, heading = self.road.pose(self.ego_s0 + self.ego_speed * t, self.ego_lane_d)
        return make_transform(rot_z(float(heading)), np.array([xy[0], xy[1], 0.0]))

    def boxes(self, t: float) -> Boxes:
        """All object boxes at time `t` (s)."""
        n = len(self.objects)
        centers = np.zeros((n, 3))
        sizes = np.zeros((n, 3))
        yaws = np.zeros(n)
        for i, ob in enumerate(self.objects):
            if ob.static_xy is not None:
                centers[i, :2] = ob.static_xy
                yaws[i] = ob.static_yaw
            else:
                xy, heading = self.road.pose(ob.s0 + ob.direction * ob.speed * t, ob.d)
                centers[i, :2] = xy
                yaws[i] = float(heading) + (0.0 if ob.direction > 0 else np.pi)
            sizes[i] = ob.size
            centers[i, 2] = ob.size[2] / 2.0 + GROUND_CLEARANCE_M
        yaws = np.mod(yaws + np.pi, 2 * np.pi) - np.pi
        return Boxes(centers, sizes, yaws, np.arange(n))

    def sensor_pose(self, sensor: SensorSpec, t: float) -> np.ndarray:
        """4 x 4 sensor → global transform at time `t`."""
        return self.ego_pose(t) @ sensor.sensor_to_ego


# ---------------------------------------------------------------------------------------------
# Scene generation
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneParams:
    """Knobs of `make_world` (counts are per 100 m of road)."""

    duration_s: float
    lane_vehicles_per_100m: float = 3.0
    parked_per_100m: float = 4.0
    lot_vehicles_per_100m: float = 6.0
    pedestrians_per_100m: float = 6.0
    margin_m: float = 70.0


def _pick_category(rng: np.random.Generator, truck_p: float = 0.15, bus_p: float = 0.04) -> str:
    u = rng.uniform()
    if u < bus_p:
        return "vehicle.bus.rigid"
    if u < bus_p + truck_p:
        return "vehicle.truck"
    return "vehicle.car"


def _sample_size(rng: np.random.Generator, category: str) -> tuple[float, float, float]:
    ranges = CATEGORY_STYLE[category][1]
    w, length, h = (float(rng.uniform(lo, hi)) for lo, hi in ranges)
    return round(w, 3), round(length, 3), round(h, 3)


def _sample_color(rng: np.random.Generator, category: str) -> tuple[int, int, int]:
    base = np.asarray(CATEGORY_STYLE[category][0], dtype=np.float64)
    return tuple(int(v) for v in np.clip(base * rng.uniform(0.85, 1.08), 0, 255))  # type: ignore[return-value]


def _radius(size: tuple[float, float, float]) -> float:
    return 0.5 * float(np.hypot(size[0], size[1]))


def make_world(rng: np.random.Generator, params: SceneParams) -> World:
    """Sample a scene: a curved road, a moving ego, traffic, parked cars, lots and pedestrians.

    Global coordinates are shifted so the whole scene lies in x, y > 10 m (map mask pixels).
    """
    curvature = float(rng.choice([0.0, 1.0]) * rng.uniform(-1 / 250.0, 1 / 250.0))
    heading = float(rng.uniform(-np.pi, np.pi))
    road0 = Road((0.0, 0.0), heading, curvature)
    ego_lane = int(rng.choice([-1, -2]))
    ego_speed = float(rng.uniform(3.0, 10.0)) if rng.uniform() > 0.1 else 0.0
    dur = params.duration_s
    s_lo, s_hi = -params.margin_m, ego_speed * dur + params.margin_m
    length = s_hi - s_lo

    objects: list[WorldObject] = []
    static_disks: list[tuple[float, float, float]] = []  # (x, y, r) in the un-shifted frame

    def free(xy: np.ndarray, r: float) -> bool:
        return all(np.hypot(xy[0] - x, xy[1] - y) > r + rr + 0.5 for x, y, rr in static_disks)

    # Moving traffic: one speed per lane so vehicles in a lane never collide.
    for lane in (-2, -1, 1, 2):
        direction = 1 if lane < 0 else -1
        if lane == ego_lane:
            lane_speed = ego_speed
        elif direction > 0:
            lane_speed = float(np.clip(ego_speed + rng.uniform(-3.0, 4.0), 0.0, 14.0))
        else:
            lane_speed = float(rng.uniform(4.0, 12.0)) * float(rng.uniform() > 0.1)
        # Extend the lane span so traffic that drives in or out during the scene exists.
        travel = lane_speed * dur
        lo, hi = s_lo - travel, s_hi + travel
        n = rng.poisson(params.lane_vehicles_per_100m * (hi - lo) / 100.0)
        s_vals = np.sort(rng.uniform(lo, hi, size=n))
        last_front = -np.inf
        for s in s_vals:
            cat = _pick_category(rng)
            size = _sample_size(rng, cat)
            half = size[1] / 2.0
            if s - half < last_front + 3.0:
                continue
            if lane == ego_lane and abs(s) < half + 8.0:
                continue  # keep the ego's own spot free (it drives at the lane speed)
            last_front = s + half
            objects.append(
                WorldObject(
                    cat,
                    size,
                    _sample_color(rng, cat),
                    "vehicle.moving" if lane_speed > 0.2 else "vehicle.stopped",
                    s0=float(s),
                    d=road0.lane_offset(lane) + float(rng.uniform(-0.15, 0.15)),
                    speed=lane_speed,
                    direction=direction,
                )
            )

    # Parked cars along both kerbs (static).
    for side in (-1, 1):
        n = rng.poisson(params.parked_per_100m * length / 100.0)
        for s in rng.uniform(s_lo, s_hi, size=n):
            cat = "vehicle.car" if rng.uniform() > 0.1 else "vehicle.truck"
            size = _sample_size(rng, cat)
            d = side * (road0.lanes_half_width + 1.3 + float(rng.uniform(-0.1, 0.1)))
            xy, th = road0.pose(s, d)
            if not free(xy, _radius(size)):
                continue
            static_disks.append((float(xy[0]), float(xy[1]), _radius(size)))
            yaw = float(th) + (0.0 if rng.uniform() > 0.3 else np.pi)
            objects.append(
                WorldObject(
                    cat,
                    size,
                    _sample_color(rng, cat),
                    "vehicle.parked",
                    static_xy=(float(xy[0]), float(xy[1])),
                    static_yaw=yaw,
                )
            )

    # Vehicles in lots beside the road, any orientation, up to 48 m from the centreline.
    n = rng.poisson(params.lot_vehicles_per_100m * length / 100.0)
    kerb = road0.kerb_half_width
    for _ in range(n):
        s = rng.uniform(s_lo, s_hi)
        d = float(rng.choice([-1, 1]) * rng.uniform(kerb + 1.5, 48.0))
        cat = _pick_category(rng, truck_p=0.2, bus_p=0.05)
        size = _sample_size(rng, cat)
        xy, th = road0.pose(s, d)
        if abs(d) - _radius(size) < kerb + 0.5 or not free(xy, _radius(size)):
            continue
        static_disks.append((float(xy[0]), float(xy[1]), _radius(size)))
        if rng.uniform() < 0.6:  # rows aligned with the road
            yaw = float(th) + float(rng.choice([0.0, np.pi / 2, np.pi, -np.pi / 2]))
            yaw += float(rng.uniform(-0.2, 0.2))
        else:
            yaw = float(rng.uniform(-np.pi, np.pi))
        objects.append(
            WorldObject(
                cat,
                size,
                _sample_color(rng, cat),
                "vehicle.parked",
                static_xy=(float(xy[0]), float(xy[1])),
                static_yaw=yaw,
            )
        )

    # Pedestrians: walking on the sidewalks (one speed per side and direction slot so they never
    # overlap) or standing on the grass.
    cat = "human.pedestrian.adult"
    n = rng.poisson(params.pedestrians_per_100m * length / 100.0)
    for side in (-1, 1):
        speed = float(rng.uniform(0.8, 1.6))
        direction = int(rng.choice([-1, 1]))
        s_vals = np.sort(rng.uniform(s_lo, s_hi, size=n // 3))
        last = -np.inf
        for s in s_vals:
            if s < last + 1.5:
                continue
            last = s
            size = _sample_size(rng, cat)
            d = side * (road0.half_width + road0.sidewalk_width / 2.0 + 0.3)
            objects.append(
                WorldObject(
                    cat,
                    size,
                    _sample_color(rng, cat),
                    "pedestrian.moving",
                    s0=float(s),
                    d=d,
                    speed=speed,
                    direction=direction,
                )
            )
    for _ in range(n - 2 * (n // 3)):
        s = rng.uniform(s_lo, s_hi)
        d = float(rng.choice([-1, 1]) * rng.uniform(kerb + 1.0, 45.0))
        size = _sample_size(rng, cat)
        xy, th = road0.pose(s, d)
        if not free(xy, _radius(size)):
            continue
        static_disks.append((float(xy[0]), float(xy[1]), _radius(size)))
        objects.append(
            WorldObject(
                cat,
                size,
                _sample_color(rng, cat),
                "pedestrian.standing",
                static_xy=(float(xy[0]), float(xy[1])),
                static_yaw=float(rng.uniform(-np.pi, np.pi)),
            )
        )

    # Shift so that everything near the trajectory has x, y > 10 m.
    s_grid = np.linspace(s_lo, s_hi, 64)
    pts = np.concatenate([road0.pose(s_grid, dd)[0] for dd in (-60.0, 0.0, 60.0)])
    shift = 10.0 - pts.min(axis=0)
    road = Road((float(shift[0]), float(shift[1])), heading, curvature)
    shifted = [
        ob
        if ob.static_xy is None
        else replace(
            ob, static_xy=(ob.static_xy[0] + float(shift[0]), ob.static_xy[1] + float(shift[1]))
        )
        for ob in objects
    ]

    sun_az = rng.uniform(-np.pi, np.pi)
    sun_el = rng.uniform(np.deg2rad(25), np.deg2rad(65))
    sun = np.array(
        [np.cos(sun_el) * np.cos(sun_az), np.cos(sun_el) * np.sin(sun_az), np.sin(sun_el)]
    )
    return World(
        road=road,
        rig=nominal_rig(rng),
        objects=tuple(shifted),
        ego_s0=0.0,
        ego_lane_d=road.lane_offset(ego_lane),
        ego_speed=ego_speed,
        sun_dir=sun,
        duration_s=dur,
    )


def map_extent(world: World, margin_m: float = 60.0) -> tuple[float, float]:
    """Width and height (m) of a map mask anchored at the global origin that covers the scene."""
    s = np.linspace(-margin_m, world.ego_speed * world.duration_s + margin_m, 64)
    pts = np.concatenate([world.road.pose(s, dd)[0] for dd in (-margin_m, 0.0, margin_m)])
    top = pts.max(axis=0) + 10.0
    return float(top[0]), float(top[1])
