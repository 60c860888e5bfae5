"""Synthetic scenes in the official nuScenes schema (`lss-bev-synth`).

Each scene is one `World` (see `world.py`): a curved road with lane markings, a moving ego with a
nuScenes-like rig (6 cameras, LIDAR_TOP), traffic, parked cars, cars in lots and pedestrians.
From it we render 1600 x 900 JPEGs (`render.py`), ray-cast 32-ring lidar sweeps (`lidar.py`) and
write every table that `nuscenes.nuscenes.NuScenes` loads:

    dataroot/<version>/{category,attribute,visibility,instance,sensor,calibrated_sensor,
                        ego_pose,log,scene,sample,sample_data,sample_annotation,map}.json
    dataroot/samples/CAM_*/<log>__CAM_*__<timestamp>.jpg
    dataroot/samples/LIDAR_TOP/<log>__LIDAR_TOP__<timestamp>.pcd.bin  (float32 x y z i ring)
    dataroot/maps/<token>.png  (drivable-area mask, 0.1 m / px)

Key frames at 2 Hz by default (`--rate-hz` / `sample_period_us` for denser sequences, e.g. 10 Hz
for temporal-fusion benchmarks; the default output is unchanged); no sweeps. Scene `i` depends
only on (seed, i), so scenes are reproducible and adding scenes does not change earlier ones.
Scenes are named `synth-0000`, `synth-0001`, ...; the last ones are held out by
`split_scene_names`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from lss_bev_ros.data.lidar import cast_lidar
from lss_bev_ros.data.render import camera_view, encode_jpeg, make_snapshot, render_camera
from lss_bev_ros.data.world import (
    CAMERA_CHANNELS,
    CATEGORY_STYLE,
    LIDAR_CHANNEL,
    SceneParams,
    SensorSpec,
    World,
    make_world,
    map_extent,
    quat_from_matrix,
    yaw_quat,
)

SCENE_PREFIX = "synth-"
SAMPLE_PERIOD_US = 500_000  # 2 Hz key frames
FIRST_TIMESTAMP_US = 1_533_000_000_000_000
MAP_RESOLUTION_M = 0.1  # NuScenes(map_resolution=0.1) default

# nuScenes v1.0 categories (name, short description).
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("human.pedestrian.adult", "Adult subcategory."),
    ("human.pedestrian.child", "Child subcategory."),
    ("human.pedestrian.wheelchair", "Wheelchairs."),
    ("human.pedestrian.stroller", "Strollers."),
    ("human.pedestrian.personal_mobility", "Small electric or self-propelled vehicles."),
    ("human.pedestrian.police_officer", "Police officer."),
    ("human.pedestrian.construction_worker", "Construction worker."),
    ("animal", "All animals."),
    ("vehicle.car", "Vehicle designed primarily for personal use."),
    ("vehicle.motorcycle", "Gasoline or electric powered 2-wheeled vehicle."),
    ("vehicle.bicycle", "Human or electric powered 2-wheeled vehicle."),
    ("vehicle.bus.bendy", "Bendy bus subcategory."),
    ("vehicle.bus.rigid", "Rigid bus subcategory."),
    ("vehicle.truck", "Vehicles primarily designed to haul cargo."),
    ("vehicle.construction", "Vehicles primarily designed for construction."),
    ("vehicle.emergency.ambulance", "All types of ambulances."),
    ("vehicle.emergency.police", "All types of police vehicles."),
    ("vehicle.trailer", "Any vehicle trailer."),
    ("movable_object.barrier", "Temporary road barrier."),
    ("movable_object.trafficcone", "All types of traffic cone."),
    ("movable_object.pushable_pullable", "Objects that a pedestrian may push or pull."),
    ("movable_object.debris", "Movable object that is left on the driveable surface."),
    ("static_object.bicycle_rack", "Area or device intended to park or secure bicycles."),
)
ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("vehicle.moving", "Vehicle is moving."),
    ("vehicle.stopped", "Vehicle, with a driver/rider in/on it, is currently stationary."),
    ("vehicle.parked", "Vehicle is stationary (usually for longer duration) with no driver."),
    ("cycle.with_rider", "There is a rider on the bicycle or motorcycle."),
    ("cycle.without_rider", "There is NO rider on the bicycle or motorcycle."),
    ("pedestrian.sitting_lying_down", "The human is sitting or lying down."),
    ("pedestrian.standing", "The human is standing."),
    ("pedestrian.moving", "The human is moving."),
)
VISIBILITIES: tuple[tuple[str, str, str], ...] = (
    ("1", "v0-40", "visibility of whole object is between 0 and 40%"),
    ("2", "v40-60", "visibility of whole object is between 40 and 60%"),
    ("3", "v60-80", "visibility of whole object is between 60 and 80%"),
    ("4", "v80-100", "visibility of whole object is between 80 and 100%"),
)
TABLES = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)


def scene_name(index: int) -> str:
    """Name of synthetic scene `index` (e.g. `synth-0003`)."""
    return f"{SCENE_PREFIX}{index:04d}"


def split_scene_names(n_scenes: int, n_val: int = 2) -> tuple[list[str], list[str]]:
    """(train, val) scene names for a dataset of `n_scenes`: the last `n_val` are held out."""
    if not 0 <= n_val < n_scenes:
        raise ValueError(f"need 0 <= n_val < n_scenes, got n_val={n_val}, n_scenes={n_scenes}")
    names = [scene_name(i) for i in range(n_scenes)]
    return names[: n_scenes - n_val], names[n_scenes - n_val :]


def is_synthetic_scene(name: str) -> bool:
    """Whether a scene name comes from this generator."""
    return name.startswith(SCENE_PREFIX)


def visibility_token(fraction: float) -> str:
    """nuScenes visibility token ('1'..'4') of an unoccluded fraction in [0, 1]."""
    if fraction < 0.4:
        return "1"
    if fraction < 0.6:
        return "2"
    if fraction < 0.8:
        return "3"
    return "4"


def scene_world(
    seed: int, scene_index: int, samples_per_scene: int, sample_period_s: float = 0.5
) -> World:
    """The `World` behind scene `scene_index` of a dataset generated with `seed` (key frames
    every `sample_period_s` seconds; the scene lasts `(samples_per_scene - 1) * period`)."""
    rng = np.random.default_rng([seed, scene_index])
    return make_world(rng, SceneParams(duration_s=(samples_per_scene - 1) * sample_period_s))


@dataclass(frozen=True)
class SynthConfig:
    """What to generate."""

    n_scenes: int = 2
    samples_per_scene: int = 10
    seed: int = 0
    version: str = "v1.0-mini"
    jpeg_quality: int = 90
    annotation_range_m: float = 75.0  # covers the +-50 m BEV square including its corners
    sample_period_us: int = SAMPLE_PERIOD_US  # key-frame period (500 ms: nuScenes' 2 Hz)


@dataclass
class SynthSummary:
    """What `generate_dataset` wrote."""

    dataroot: Path
    version: str
    scene_names: list[str]
    n_samples: int
    n_annotations: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def seconds_per_sample(self) -> float:
        """Wall time per key frame (6 images + 1 sweep), s."""
        return self.seconds / max(self.n_samples, 1)


class _Tokens:
    """Deterministic 32-hex tokens from (seed, parts)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, *parts: object) -> str:
        key = "/".join(str(p) for p in (self.seed, *parts))
        return hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()


def _pose_record(token: str, timestamp: int, T: np.ndarray) -> dict:
    return {
        "token": token,
        "timestamp": timestamp,
        "rotation": quat_from_matrix(T[:3, :3]),
        "translation": [float(v) for v in T[:3, 3]],
    }


def _calib_record(token: str, sensor_token: str, spec: SensorSpec) -> dict:
    return {
        "token": token,
        "sensor_token": sensor_token,
        "translation": [float(v) for v in spec.translation],
        "rotation": quat_from_matrix(spec.rotation),
        "camera_intrinsic": [] if spec.intrinsic is None else spec.intrinsic.tolist(),
    }


def _write_map_mask(world: World, path: Path) -> None:
    """Drivable-area mask (255 on the paved road) at MAP_RESOLUTION_M, origin at global (0, 0)."""
    w_m, h_m = map_extent(world)
    W, H = int(np.ceil(w_m / MAP_RESOLUTION_M)), int(np.ceil(h_m / MAP_RESOLUTION_M))
    mask = np.zeros((H, W), dtype=np.uint8)
    s = np.arange(-80.0, world.ego_speed * world.duration_s + 80.0, 2.0)
    left, _ = world.road.pose(s, world.road.half_width)
    right, _ = world.road.pose(s, -world.road.half_width)
    poly = np.concatenate([left, right[::-1]])
    px = np.stack([poly[:, 0] / MAP_RESOLUTION_M, H - poly[:, 1] / MAP_RESOLUTION_M], axis=1)
    cv2.fillPoly(mask, [np.round(px).astype(np.int32)], 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), mask)


def _static_tables(tok: _Tokens) -> dict[str, list[dict]]:
    sensors = [
        {"token": tok("sensor", ch), "channel": ch, "modality": "camera"} for ch in CAMERA_CHANNELS
    ]
    sensors.append(
        {"token": tok("sensor", LIDAR_CHANNEL), "channel": LIDAR_CHANNEL, "modality": "lidar"}
    )
    return {
        "category": [
            {"token": tok("category", n), "name": n, "description": d} for n, d in CATEGORIES
        ],
        "attribute": [
            {"token": tok("attribute", n), "name": n, "description": d} for n, d in ATTRIBUTES
        ],
        "visibility": [{"token": t, "level": lv, "description": d} for t, lv, d in VISIBILITIES],
        "sensor": sensors,
    }


def _generate_scene(
    index: int,
    cfg: SynthConfig,
    dataroot: Path,
    tok: _Tokens,
    tables: dict[str, list[dict]],
    pbar: tqdm | None,
) -> None:
    """Append scene `index` to `tables` and write its files."""
    name = scene_name(index)
    period_us = cfg.sample_period_us
    world = scene_world(cfg.seed, index, cfg.samples_per_scene, period_us * 1e-6)
    rig = world.rig
    scene_tok = tok("scene", index)
    log_tok = tok("log", index)
    map_tok = tok("map", index)
    logfile = f"{name}-2018-08-01-12-00-00+0000"
    tables["log"].append(
        {
            "token": log_tok,
            "logfile": logfile,
            "vehicle": "synth",
            "date_captured": "2018-08-01",
            "location": "synth-city",
        }
    )
    map_file = f"maps/{map_tok}.png"
    _write_map_mask(world, dataroot / map_file)
    tables["map"].append(
        {
            "token": map_tok,
            "log_tokens": [log_tok],
            "category": "semantic_prior",
            "filename": map_file,
        }
    )
    sensor_tok = {r["channel"]: r["token"] for r in tables["sensor"]}
    specs: dict[str, SensorSpec] = {c.channel: c for c in rig.cameras}
    specs[LIDAR_CHANNEL] = rig.lidar
    calib_tok = {}
    for ch, spec in specs.items():
        calib_tok[ch] = tok("calibrated_sensor", index, ch)
        tables["calibrated_sensor"].append(_calib_record(calib_tok[ch], sensor_tok[ch], spec))
    cat_tok = {r["name"]: r["token"] for r in tables["category"]}
    attr_tok = {r["name"]: r["token"] for r in tables["attribute"]}

    n = cfg.samples_per_scene
    t0_us = FIRST_TIMESTAMP_US + index * 3_600_000_000
    sample_toks = [tok("sample", index, k) for k in range(n)]
    last_sd: dict[str, dict] = {}
    last_ann: dict[int, dict] = {}  # object index → its latest annotation record
    instances: dict[int, dict] = {}
    for k in range(n):
        t = k * period_us * 1e-6
        ts = t0_us + k * period_us
        tables["sample"].append(
            {
                "token": sample_toks[k],
                "timestamp": ts,
                "scene_token": scene_tok,
                "prev": sample_toks[k - 1] if k > 0 else "",
                "next": sample_toks[k + 1] if k + 1 < n else "",
            }
        )
        snap = make_snapshot(world, t)
        M = len(snap.boxes)
        visible = np.zeros(M)
        full = np.zeros(M)
        ego_T = world.ego_pose(t)
        for ch in (*CAMERA_CHANNELS, LIDAR_CHANNEL):
            spec = specs[ch]
            sd_tok = tok("sample_data", index, k, ch)
            if spec.modality == "camera":
                res = render_camera(snap, camera_view(world, spec, t))
                visible += res.visible_px
                full += res.full_px
                filename = f"samples/{ch}/{logfile}__{ch}__{ts}.jpg"
                data = encode_jpeg(res.image, cfg.jpeg_quality)
                fmt, width, height = "jpg", spec.width, spec.height
            else:
                sweep = cast_lidar(world, snap, t, np.random.default_rng([cfg.seed, index, k, 7]))
                lidar_counts = sweep.counts(M)
                filename = f"samples/{ch}/{logfile}__{ch}__{ts}.pcd.bin"
                data = sweep.points.astype(np.float32).tobytes()
                fmt, width, height = "pcd", 0, 0
            out = dataroot / filename
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            tables["ego_pose"].append(_pose_record(sd_tok, ts, ego_T))
            rec = {
                "token": sd_tok,
                "sample_token": sample_toks[k],
                "ego_pose_token": sd_tok,
                "calibrated_sensor_token": calib_tok[ch],
                "timestamp": ts,
                "fileformat": fmt,
                "is_key_frame": True,
                "height": height,
                "width": width,
                "filename": filename,
                "prev": "",
                "next": "",
            }
            if ch in last_sd:
                rec["prev"] = last_sd[ch]["token"]
                last_sd[ch]["next"] = sd_tok
            last_sd[ch] = rec
            tables["sample_data"].append(rec)

        # Annotations: objects near the ego that a sensor saw (lidar points or visible pixels).
        ego_xy = ego_T[:2, 3]
        dist = np.linalg.norm(snap.boxes.centers[:, :2] - ego_xy, axis=1)
        for m in range(M):
            if dist[m] > cfg.annotation_range_m or (lidar_counts[m] == 0 and visible[m] == 0):
                continue
            obj_i = int(snap.boxes.index[m])
            ob = world.objects[obj_i]
            frac = min(1.0, visible[m] / full[m]) if full[m] > 0 else 0.0
            ann_tok = tok("sample_annotation", index, k, obj_i)
            inst_tok = tok("instance", index, obj_i)
            attribute = ob.attribute
            if attribute == "vehicle.moving" and ob.speed < 0.2:
                attribute = "vehicle.stopped"
            ann = {
                "token": ann_tok,
                "sample_token": sample_toks[k],
                "instance_token": inst_tok,
                "visibility_token": visibility_token(frac),
                "attribute_tokens": [attr_tok[attribute]],
                "translation": [float(v) for v in snap.boxes.centers[m]],
                "size": [float(v) for v in snap.boxes.sizes[m]],
                "rotation": yaw_quat(float(snap.boxes.yaws[m])),
                "prev": "",
                "next": "",
                "num_lidar_pts": int(lidar_counts[m]),
                "num_radar_pts": 0,
            }
            if obj_i in last_ann:
                ann["prev"] = last_ann[obj_i]["token"]
                last_ann[obj_i]["next"] = ann_tok
                instances[obj_i]["nbr_annotations"] += 1
                instances[obj_i]["last_annotation_token"] = ann_tok
            else:
                instances[obj_i] = {
                    "token": inst_tok,
                    "category_token": cat_tok[ob.category],
                    "nbr_annotations": 1,
                    "first_annotation_token": ann_tok,
                    "last_annotation_token": ann_tok,
                }
            last_ann[obj_i] = ann
            tables["sample_annotation"].append(ann)
        if pbar is not None:
            pbar.update(1)
    tables["instance"].extend(instances[i] for i in sorted(instances))
    tables["scene"].append(
        {
            "token": scene_tok,
            "log_token": log_tok,
            "nbr_samples": n,
            "first_sample_token": sample_toks[0],
            "last_sample_token": sample_toks[-1],
            "name": name,
            "description": f"synthetic, seed {cfg.seed}, ego {world.ego_speed:.1f} m/s, "
            f"{len(world.objects)} objects",
        }
    )


def generate_dataset(
    dataroot: str | Path,
    n_scenes: int = 2,
    samples_per_scene: int = 10,
    seed: int = 0,
    version: str = "v1.0-mini",
    progress: bool = True,
    jpeg_quality: int = 90,
    sample_period_us: int = SAMPLE_PERIOD_US,
) -> SynthSummary:
    """Write a synthetic nuScenes dataset under `dataroot` (tables in `dataroot/version`);
    key frames every `sample_period_us` microseconds (default 2 Hz)."""
    if n_scenes < 1 or samples_per_scene < 1:
        raise ValueError("need at least one scene and one sample per scene")
    if sample_period_us < 1_000:
        raise ValueError(f"sample_period_us must be >= 1000 (1 kHz), got {sample_period_us}")
    cfg = SynthConfig(n_scenes, samples_per_scene, seed, version, jpeg_quality,
                      sample_period_us=int(sample_period_us))
    root = Path(dataroot)
    (root / version).mkdir(parents=True, exist_ok=True)
    tok = _Tokens(seed)
    tables: dict[str, list[dict]] = {name: [] for name in TABLES}
    tables.update(_static_tables(tok))
    start = time.perf_counter()
    pbar = tqdm(
        total=n_scenes * samples_per_scene, desc="synth", unit="sample", disable=not progress
    )
    with pbar:
        for i in range(n_scenes):
            _generate_scene(i, cfg, root, tok, tables, pbar)
    for name in TABLES:
        with open(root / version / f"{name}.json", "w") as f:
            json.dump(tables[name], f, indent=0)
    seconds = time.perf_counter() - start
    return SynthSummary(
        dataroot=root,
        version=version,
        scene_names=[scene_name(i) for i in range(n_scenes)],
        n_samples=len(tables["sample"]),
        n_annotations=len(tables["sample_annotation"]),
        seconds=seconds,
        counts={name: len(tables[name]) for name in TABLES},
    )


def write_eval_splits(dataroot: str | Path, version: str, n_scenes: int, n_val: int = 2) -> Path:
    """Write the devkit custom-split file ``<dataroot>/<version>/splits.json`` with ``synth_train``
    / ``synth_val`` = :func:`split_scene_names` (nuscenes-devkit >= 1.2 evaluates any split named
    there: ``DetectionEval(..., eval_set="synth_val")``)."""
    from lss_bev_ros.objects.nuscenes_eval import TRAIN_SPLIT, VAL_SPLIT, write_custom_splits

    train, val = split_scene_names(n_scenes, n_val)
    return write_custom_splits(dataroot, version, {TRAIN_SPLIT: train, VAL_SPLIT: val})


def category_color(category: str) -> tuple[int, int, int]:
    """Base BGR colour the renderer uses for a category (faces are this times a shade 0.5..1)."""
    return CATEGORY_STYLE[category][0]


def main(argv: list[str] | None = None) -> int:
    """`lss-bev-synth`: write a synthetic nuScenes-schema dataset."""
    parser = argparse.ArgumentParser(
        prog="lss-bev-synth",
        description="Generate synthetic scenes in the nuScenes schema (6 cameras, LIDAR_TOP, "
        "3D boxes) that nuscenes-devkit loads unmodified.",
    )
    parser.add_argument("--dataroot", required=True, help="output folder (created)")
    parser.add_argument("--scenes", type=int, default=2, help="number of scenes")
    parser.add_argument(
        "--samples-per-scene", type=int, default=10, help="key frames per scene"
    )
    parser.add_argument(
        "--rate-hz", type=float, default=1e6 / SAMPLE_PERIOD_US,
        help="key frames per second (default 2, as nuScenes; e.g. 10 for dense sequences)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (scene i depends on it)")
    parser.add_argument("--version", default="v1.0-mini", help="table folder name")
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument(
        "--val-scenes",
        type=int,
        default=2,
        help="how many trailing scenes the printed split holds out",
    )
    parser.add_argument(
        "--eval-splits",
        action="store_true",
        help="also write <version>/splits.json with the devkit custom splits synth_train / "
        "synth_val (the --val-scenes split) for nuscenes.eval (eval_set=synth_val)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not 0.0 < args.rate_hz <= 1000.0:
        parser.error(f"--rate-hz must be in (0, 1000], got {args.rate_hz}")
    summary = generate_dataset(
        args.dataroot,
        args.scenes,
        args.samples_per_scene,
        args.seed,
        args.version,
        progress=not args.quiet,
        jpeg_quality=args.jpeg_quality,
        sample_period_us=round(1e6 / args.rate_hz),
    )
    print(
        f"wrote {summary.n_samples} samples, {summary.n_annotations} annotations in "
        f"{len(summary.scene_names)} scenes to {summary.dataroot} ({summary.version}) in "
        f"{summary.seconds:.1f} s ({summary.seconds_per_sample:.2f} s/sample)"
    )
    if 0 <= args.val_scenes < args.scenes:
        train, val = split_scene_names(args.scenes, args.val_scenes)
        print(f"train scenes: {', '.join(train)}")
        print(f"val scenes:   {', '.join(val)}")
        if args.eval_splits:
            path = write_eval_splits(args.dataroot, args.version, args.scenes, args.val_scenes)
            print(f"devkit custom splits: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
