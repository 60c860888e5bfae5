"""``lss-bev-bag eval``: offline replay evaluation of the BEV pipeline over a bag (no DDS).

The bag's messages are fed, in bag order, into the same
:class:`lss_bev_ros.bev_pipeline.BevPipeline` that bev_node feeds from its subscriptions
(CameraInfo, ``/tf_static``, images -> camera sets -> grids), so "offline equals online" holds
by construction: the same synchroniser (clocked by image stamps), policy, decode reduction,
calibration updates and OccupancyGrid encoding. The grid then goes through
``occupancy_to_probability`` exactly as eval_node reads it, and
:class:`lss_bev_ros.eval.evaluator.BevEvaluator` pairs it with the reference as eval_node does
(LiDAR points moved ``lidar_top -> base_link`` with the rig extrinsic, GT boxes from the
``/gt/boxes`` MarkerArray). Only the latencies differ (here: processing time of each frame;
online: ROS time since the stamp). ROS-free: messages are decoded with the ``rosbags`` typestore.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lss_bev_ros.bev_pipeline import (
    BevFrame,
    BevPipeline,
    BevPipelineOptions,
    create_bev_backend,
    load_bev_model,
    stamp_seconds,
)
from lss_bev_ros.calibration import CalibrationError, RigCalibration, load_rig_yaml
from lss_bev_ros.conversions import (
    PointCloudError,
    occupancy_to_probability,
    pointcloud2_to_array,
    probability_to_occupancy,
)
from lss_bev_ros.diagnostics import CountingDiagnostics
from lss_bev_ros.eval.evaluator import REGIONS, BevEvaluator, FrameResult
from lss_bev_ros.eval.metrics import LatencyStats
from lss_bev_ros.eval.reference import (
    LidarFilter,
    ReferenceKind,
    boxes_from_markers,
    transform_points,
)
from rosbag_tools.bagio import (
    GT_BOXES_TOPIC,
    LIDAR_TOPIC,
    ODOM_TOPIC,
    RIG_CUSTOM_KEY,
    TYPESTORE,
    BagToolError,
    bag_custom_data,
    iter_raw,
    open_bag,
    rig_path_for_bag,
)

MSG_IMAGE = "sensor_msgs/msg/Image"
MSG_COMPRESSED = "sensor_msgs/msg/CompressedImage"


def stamp_sec(header: Any) -> float:
    """Header stamp -> seconds (the pipeline's formula)."""
    return stamp_seconds(header.stamp)


TF_STATIC_TOPIC = "/tf_static"


@dataclass(frozen=True)
class EvalOptions:
    """What to run and how to evaluate (defaults = bev_node / eval_node defaults)."""

    weights: Path | None = None  # None: untrained LSSConfig.small (plumbing only)
    backend: str = "torch"
    device: str = "cpu"
    precision: str = "auto"  # bev_node's default
    backend_options: str = ""  # "key=value, ..." (bev_node's parameter of the same name)
    cache_dir: Path | None = None
    rig: Path | None = None  # default: <bag>.rig.yaml, else the copy embedded in the bag
    cameras: tuple[str, ...] | None = None  # default: the rig's cameras
    input: str = "auto"  # "compressed" | "raw" | "auto" (compressed when the bag has it)
    decode_reduction: int = 0  # JPEG DCT decode at 1/k (bev_node's parameter); 0: auto
    reference: str = "lidar_visibility"  # eval_node default
    threshold: float = 0.5
    stamp_tolerance_s: float = 0.1
    region: str = "all"
    z_min: float = 0.3
    z_max: float = 3.0
    min_points: int = 1
    categories: tuple[str, ...] = ("vehicle.",)
    sync_tolerance_s: float = 0.05
    missing_timeout_s: float = 1.0
    time_jump_s: float = 5.0
    missing_camera_policy: str = "mask"
    use_tf_static: bool = True  # camera extrinsics from the bag's /tf_static (bev_node default)
    fusion: bool = True  # also score the temporally fused grid (fusion_node's core, /odom poses)
    fusion_objects: bool = True  # with objects: the tracks move their history (fusion_node's
    #                              objects_topic; the same track-set rule, fusion.track_set_for)
    objects: bool = False  # detector + objects cores per frame (rosbag_tools.objects_eval)
    detector_weights: Path | None = None  # default: the committed ONNX YOLO
    objects_mode: str = "fused"  # fused | geometry | bev (lss_bev_ros.objects.MODES)
    dataroot: Path | None = None  # nuScenes root of the bag: objects scored by the devkit
    dataset_version: str = "v1.0-mini"
    seed: int = 0
    torch_threads: int = 0  # 0: torch default; 1 is much faster on an oversubscribed CPU
    warmup: bool = True  # one untimed blank frame first (as bev_node's ``warmup``)
    max_frames: int | None = None
    video: Path | None = None
    video_fps: float = 0.0  # 0: the bag's camera rate
    n_sample_images: int = 4
    progress: bool = True
    write_report: bool = True

    def __post_init__(self) -> None:
        ReferenceKind.parse(self.reference)
        if self.region not in REGIONS:
            raise BagToolError(f"region must be one of {REGIONS}, got {self.region!r}")
        if self.missing_camera_policy not in ("mask", "wait"):
            raise BagToolError("missing_camera_policy must be 'mask' or 'wait'")
        if self.input not in ("auto", "compressed", "raw"):
            raise BagToolError("input must be 'auto', 'compressed' or 'raw'")
        if not 0.0 <= self.threshold <= 1.0:
            raise BagToolError("threshold must be in 0..1")
        if self.decode_reduction not in (0, 1, 2, 4, 8):
            raise BagToolError("decode_reduction must be 0 (auto), 1, 2, 4 or 8")


@dataclass
class FrameRecord:
    """One evaluated grid (metrics from BevEvaluator, timing from this run)."""

    index: int
    stamp: float  # s (grid stamp = newest image stamp of the set)
    reference_stamp: float
    iou: float
    precision: float
    recall: float
    tp: int
    fp: int
    fn: int
    tn: int
    latency_ms: float  # wall time decode -> grid of this frame
    missing: str = ""  # cameras masked in this frame
    stage_ms: dict[str, float] = field(default_factory=dict)
    observed_fraction: float = 1.0  # share of the grid's cells scored, 0..1

    def row(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("index", "stamp", "reference_stamp", "iou",
                                             "precision", "recall", "tp", "fp", "fn", "tn",
                                             "observed_fraction", "latency_ms", "missing")}
        out.update({f"ms_{k}": v for k, v in self.stage_ms.items()})
        return out


@dataclass
class BevSample:
    """A frame kept for the prediction-vs-reference pictures and the video."""

    stamp: float
    probability: np.ndarray
    visible: np.ndarray
    reference: np.ndarray | None
    iou: float
    images: dict[str, np.ndarray] | None = None
    observed: np.ndarray | None = None  # X x Y bool, cells the reference scores (None: all)


@dataclass
class EvalReport:
    """Everything one evaluation run produced."""

    bag: Path
    out_dir: Path | None
    frames: list[FrameRecord]
    summary: dict[str, Any]
    stage_stats: dict[str, dict[str, float]]
    files: dict[str, Path] = field(default_factory=dict)
    samples: list[BevSample] = field(default_factory=list)

    def summary_text(self) -> str:
        """Plain-text summary table (metrics + latency percentiles per stage)."""
        from rosbag_tools.report import summary_table

        return summary_table(self)


FrameHook = Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray, "np.ndarray | None",
                      FrameResult, "np.ndarray | None"], None]
"""Called per evaluated frame: (camera images, probability X x Y, known X x Y, reference X x Y
or None, metrics, observed X x Y or None: cells scored) - the video writer uses it."""


def load_model(opts: EvalOptions) -> tuple[Any, Any]:
    """(model, cfg) from ``opts.weights`` (``weights_only=True``) or an untrained small LSS."""
    try:
        model, cfg, _ = load_bev_model(opts.weights, "small", opts.seed)
    except FileNotFoundError as exc:
        raise BagToolError(str(exc)) from exc
    except Exception as exc:
        raise BagToolError(f"cannot load checkpoint {opts.weights}: {exc}") from exc
    return model, cfg


def load_rig_for_bag(bag: Path, reader, explicit: Path | None) -> tuple[RigCalibration, str]:
    """Rig calibration: explicit file, else ``<bag>.rig.yaml``, else embedded custom_data."""
    try:
        if explicit is not None:
            return load_rig_yaml(explicit), str(explicit)
        beside = rig_path_for_bag(bag)
        if beside.is_file():
            return load_rig_yaml(beside), str(beside)
        emb = bag_custom_data(reader).get(RIG_CUSTOM_KEY)
        if emb:
            return RigCalibration.from_dict(yaml.safe_load(emb)), "embedded in bag metadata"
    except CalibrationError as exc:
        raise BagToolError(f"rig calibration: {exc}") from exc
    raise BagToolError(
        f"no rig calibration for {bag}: pass --rig, or put {beside.name} beside the bag "
        "(lss-bev-bag convert writes it)"
    )


class ReplayEvaluator:
    """The offline pipeline; :meth:`run` walks the bag once."""

    def __init__(self, bag: str | Path, opts: EvalOptions,
                 on_frame: FrameHook | None = None,
                 model: tuple[Any, Any] | None = None) -> None:
        self.bag = Path(bag)
        self.opts = opts
        self.on_frame = on_frame
        self.model = model  # (model, cfg) already loaded from opts.weights; None: load here
        self.frames: list[FrameRecord] = []
        self.samples: list[BevSample] = []
        self.diag = CountingDiagnostics()  # the pipeline's and this tool's rejections
        self.stage_stats: dict[str, LatencyStats] = OrderedDict()
        self.latency = LatencyStats(100_000)
        self.processed = 0
        self.wall_s = 0.0
        self.model_wall_s = 0.0
        self._t_first: float | None = None  # start of the first frame (throughput window)
        self._t_last: float | None = None
        self.backend_name = ""
        self.rig_source = ""
        self.evaluator: BevEvaluator | None = None
        self.fused_evaluator: BevEvaluator | None = None  # the fused grid, same reference
        self.fusion: Any = None  # lss_bev_ros.fusion.GridFusion when opts.fusion and /odom
        self.objects: Any = None  # rosbag_tools.objects_eval.OfflineObjects with opts.objects
        self._track_sets: Any = None  # fusion.TrackSetBuffer (fusion_node's defaults) with fusion

    # ------------------------------------------------------------------------------- helpers
    def _error(self, key: str, msg: str) -> None:
        self.diag.error(key, msg)

    @property
    def errors(self) -> dict[str, int]:
        """Rejected input per kind (the keys bev_node counts in /diagnostics)."""
        return {k: self.diag.counters.get(k, 0) for k in self.diag.last_error}

    def _topics(self, reader, rig: RigCalibration) -> tuple[dict[str, str], dict[str, str], str]:
        """(image topic -> camera, camera_info topic -> camera, image msgtype)."""
        have = {c.topic: c.msgtype for c in reader.connections}
        want = self.opts.input
        img: dict[str, str] = {}
        info: dict[str, str] = {}
        msgtype = MSG_COMPRESSED
        for cam in rig.cameras:
            base = f"/cameras/{cam.frame_id}"
            comp, raw = f"{base}/image_raw/compressed", f"{base}/image_raw"
            if want in ("auto", "compressed") and have.get(comp) == MSG_COMPRESSED:
                img[comp] = cam.name
            elif want in ("auto", "raw") and have.get(raw) == MSG_IMAGE:
                img[raw] = cam.name
                msgtype = MSG_IMAGE
            else:
                raise BagToolError(
                    f"bag has no {want if want != 'auto' else ''} image topic for {cam.name} "
                    f"(looked for {comp} / {raw}); image topics in bag: "
                    f"{sorted(t for t in have if '/cameras/' in t)}"
                )
            if have.get(f"{base}/camera_info") == "sensor_msgs/msg/CameraInfo":
                info[f"{base}/camera_info"] = cam.name
        return img, info, msgtype

    # ----------------------------------------------------------------------------------- run
    def run(self) -> EvalReport:
        """Evaluate the whole bag (``torch_threads`` applied for this run only)."""
        import torch

        opts = self.opts
        prev_threads = torch.get_num_threads()
        if opts.torch_threads > 0:
            torch.set_num_threads(int(opts.torch_threads))
        try:
            return self._run()
        finally:
            if torch.get_num_threads() != prev_threads:
                torch.set_num_threads(prev_threads)  # process-wide setting: restore it

    def _run(self) -> EvalReport:
        from tqdm import tqdm

        from lss_bev_ros.backends import parse_backend_options

        opts = self.opts
        t_start = time.perf_counter()
        with open_bag(self.bag) as reader:
            rig, self.rig_source = load_rig_for_bag(self.bag, reader, opts.rig)
            if opts.cameras:
                try:
                    rig = rig.subset(list(opts.cameras))
                except CalibrationError as exc:
                    raise BagToolError(str(exc)) from exc
            img_topics, info_topics, img_type = self._topics(reader, rig)
            lidar_extr = None
            if rig.lidar_rotation is not None and rig.lidar_translation is not None:
                lidar_extr = (rig.lidar_rotation, rig.lidar_translation)
            kind = ReferenceKind.parse(opts.reference)
            topics = list(img_topics) + list(info_topics)
            have = {c.topic for c in reader.connections}
            if opts.use_tf_static and TF_STATIC_TOPIC in have:
                topics.append(TF_STATIC_TOPIC)
            if kind.needs_lidar:
                if LIDAR_TOPIC not in have:
                    raise BagToolError(f"reference {opts.reference} needs {LIDAR_TOPIC}")
                topics.append(LIDAR_TOPIC)
            if kind.needs_boxes:
                if GT_BOXES_TOPIC not in have:
                    raise BagToolError(f"reference {opts.reference} needs {GT_BOXES_TOPIC}")
                topics.append(GT_BOXES_TOPIC)
            n_sets = min(c.msgcount for c in reader.connections if c.topic in img_topics)
            if opts.max_frames:
                n_sets = min(n_sets, opts.max_frames)

            model, cfg = self.model if self.model is not None else load_model(opts)
            try:
                backend = create_bev_backend(
                    opts.backend, model, cfg, rig, opts.device, opts.precision,
                    Path(opts.cache_dir) if opts.cache_dir else None,
                    parse_backend_options(opts.backend_options), self.diag)
            except Exception as exc:
                raise BagToolError(f"backend {opts.backend}: {exc}") from exc
            self.backend_name = str(getattr(backend, "name", opts.backend))
            pipe = BevPipeline(backend, cfg, rig, BevPipelineOptions(
                compressed=img_type == MSG_COMPRESSED, decode_reduction=opts.decode_reduction,
                threshold=opts.threshold, sync_tolerance_s=opts.sync_tolerance_s,
                missing_timeout_s=opts.missing_timeout_s, time_jump_s=opts.time_jump_s,
                missing_camera_policy=opts.missing_camera_policy), self.diag)
            if opts.warmup:
                pipe.warmup()
            grid = pipe.grid
            filt = LidarFilter(z_min=opts.z_min, z_max=opts.z_max, min_points=opts.min_points)
            prefixes = list(opts.categories) or None
            origin = None if lidar_extr is None else tuple(float(v) for v in lidar_extr[1])
            ev = BevEvaluator(grid, kind, opts.threshold, opts.stamp_tolerance_s,
                              region=opts.region, lidar_filter=filt, prefixes=prefixes,
                              sensor_origin=origin)
            self.evaluator = ev
            poses = self._read_poses(reader) if (opts.fusion or opts.objects) and \
                ODOM_TOPIC in have else None
            if opts.objects:
                from rosbag_tools.objects_eval import OfflineObjects

                self.objects = OfflineObjects(rig, grid, self.diag, opts.detector_weights,
                                              mode=opts.objects_mode,
                                              time_jump_s=opts.time_jump_s)
            if poses is not None and opts.fusion:
                from lss_bev_ros.fusion import FusionConfig, GridFusion

                self.fusion = GridFusion(FusionConfig(grid=grid))
                self.fused_evaluator = BevEvaluator(
                    grid, kind, opts.threshold, opts.stamp_tolerance_s, region=opts.region,
                    lidar_filter=filt, prefixes=prefixes, sensor_origin=origin)
            sample_at = set(np.linspace(0, max(n_sets - 1, 0), max(opts.n_sample_images, 0))
                            .round().astype(int).tolist()) if opts.n_sample_images else set()
            pending: dict[float, tuple[int, float, dict, str, Any, dict | None]] = {}
            pbar = tqdm(total=n_sets, desc=f"eval {self.bag.name}", unit="frame",
                        disable=not opts.progress, leave=False)

            def record(results: list[FrameResult]) -> None:
                for res in results:
                    idx, lat, stages, missing, out, images = pending.pop(
                        res.stamp, (-1, math.nan, {}, "", None, None))
                    self.frames.append(FrameRecord(
                        index=len(self.frames), stamp=res.stamp,
                        reference_stamp=res.reference_stamp, iou=res.iou,
                        precision=res.precision, recall=res.recall, tp=res.confusion.tp,
                        fp=res.confusion.fp, fn=res.confusion.fn, tn=res.confusion.tn,
                        latency_ms=lat, missing=missing, stage_ms=stages,
                        observed_fraction=res.observed_fraction))
                    if out is None:
                        continue
                    ref, observed = res.reference, res.observed  # what was scored
                    if opts.region == "visible":  # unseen cells are not scored either
                        observed = out[1] if observed is None else observed & out[1]
                    if idx in sample_at:
                        self.samples.append(BevSample(res.stamp, out[0], out[1], ref, res.iou,
                                                      images, observed))
                    if self.on_frame is not None:
                        self.on_frame(images or {}, out[0], out[1], ref, res, observed)

            def on_frame(frame: BevFrame, images: dict[str, np.ndarray] | None) -> None:
                # the grid as eval_node reads it from the OccupancyGrid bev_node publishes
                prob_q, known = occupancy_to_probability(frame.occupancy, grid.nx, grid.ny)
                lat = frame.total_ms
                self.model_wall_s += sum(v for k, v in frame.stage_ms.items()
                                         if k not in ("convert", "encode_grid")) * 1e-3
                for k, v in frame.stage_ms.items():
                    self.stage_stats.setdefault(k, LatencyStats(100_000)).add(v)
                self.latency.add(lat)
                keep = self.processed in sample_at or self.on_frame is not None
                pending[frame.stamp] = (self.processed, lat, dict(frame.stage_ms),
                                        ",".join(frame.missing),
                                        (prob_q, known) if keep else None,
                                        images if keep else None)
                self.processed += 1
                pbar.update(1)
                record(ev.add_grid(frame.stamp, prob_q, known, lat))
                if self.fusion is not None and poses is not None and \
                        self.fused_evaluator is not None:
                    fused = self.fusion.update(frame.stamp, prob_q, known,
                                               poses.lookup(frame.stamp).pose,
                                               self._fusion_objects(frame.stamp))
                    if fused is not None:  # as fusion_node publishes and eval_node reads it
                        occ = probability_to_occupancy(fused.probability, fused.known)
                        fq, fk = occupancy_to_probability(occ, grid.nx, grid.ny)
                        self.fused_evaluator.add_grid(frame.stamp, fq, fk, lat)
                self._t_last = time.perf_counter()

            try:
                stop_after: float | None = None  # bag time after which nothing can pair
                for conn, t_ns, raw in iter_raw(reader, topics):
                    now = t_ns * 1e-9
                    topic = conn.topic
                    if opts.max_frames and self.processed >= opts.max_frames:
                        # keep feeding references until the last grid can still be paired
                        if stop_after is None:
                            stop_after = now + opts.stamp_tolerance_s + 1e-6
                        if now > stop_after:
                            break
                        if topic in img_topics:
                            continue
                    try:
                        msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
                    except Exception as exc:
                        self._error("undecodable_record", f"{topic} @ {t_ns}: {exc}")
                        continue
                    if topic in img_topics:
                        s = pipe.add_image(img_topics[topic], msg)
                        if s is None:
                            continue
                        if self._t_first is None:
                            self._t_first = time.perf_counter()
                        keep = self.processed in sample_at or self.on_frame is not None
                        frame = pipe.process(s)
                        if frame is not None:
                            on_frame(frame, self._images(pipe, s) if keep else None)
                            if self.objects is not None:
                                prob, known = occupancy_to_probability(frame.occupancy,
                                                                       grid.nx, grid.ny)
                                pose = _objects_pose(poses, frame.stamp)
                                self.objects.set_rig(pipe.current_rig())
                                objs = self.objects.add(frame.stamp, s.items, prob, known, pose)
                                self._add_track_set(frame.stamp, objs)
                    elif topic in info_topics:
                        pipe.add_camera_info(info_topics[topic], list(msg.k), int(msg.width),
                                             int(msg.height))
                    elif topic == TF_STATIC_TOPIC:
                        for tr in msg.transforms:
                            q, t = tr.transform.rotation, tr.transform.translation
                            pipe.add_static_transform(tr.header.frame_id, tr.child_frame_id,
                                                      [q.w, q.x, q.y, q.z], [t.x, t.y, t.z])
                    elif topic == LIDAR_TOPIC:
                        self._on_cloud(msg, ev, lidar_extr, record)
                    elif topic == GT_BOXES_TOPIC:
                        self._on_boxes(msg, ev, record)
            finally:
                pbar.close()
            record(ev.flush())
            if self.fused_evaluator is not None:
                self.fused_evaluator.flush()
        self.wall_s = time.perf_counter() - t_start
        return self._report()

    def _add_track_set(self, stamp: float, frame: Any) -> None:
        """Keep the tracks of one objects frame for the fusion (map frame only, as fusion_node
        takes /objects/tracked; a looped bag restarts the list)."""
        if self.fusion is None or not self.opts.fusion_objects or frame.tracked_frame != "map":
            return
        from lss_bev_ros.fusion import ObjectMotion, TrackSetBuffer

        if self._track_sets is None:
            self._track_sets = TrackSetBuffer()
        self._track_sets.add(stamp, [ObjectMotion.from_object(t, stamp) for t in frame.tracked])

    def _fusion_objects(self, stamp: float) -> list[Any] | None:
        """fusion_node's rule (:class:`lss_bev_ros.fusion.TrackSetBuffer`, its defaults);
        None: no usable track set."""
        best = None if self._track_sets is None else self._track_sets.for_stamp(stamp)
        return None if best is None else best[1]

    def _read_poses(self, reader: Any) -> Any:
        """All ``/odom`` poses (map -> base_link) of the bag, for the fused grid."""
        from lss_bev_ros.fusion import Pose2D, PoseBuffer

        odoms = []
        for conn, t_ns, raw in iter_raw(reader, [ODOM_TOPIC]):
            try:
                m = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            except Exception as exc:
                self._error("undecodable_record", f"{ODOM_TOPIC} @ {t_ns}: {exc}")
                continue
            p, q = m.pose.pose.position, m.pose.pose.orientation
            odoms.append((stamp_sec(m.header),
                          Pose2D.from_quaternion(p.x, p.y, q.x, q.y, q.z, q.w)))
        buf = PoseBuffer(capacity=max(2, len(odoms)), tolerance_s=0.1)
        for stamp, pose in sorted(odoms, key=lambda e: e[0]):
            buf.add(stamp, pose)
        return buf

    @staticmethod
    def _images(pipe: BevPipeline, s: Any) -> dict[str, np.ndarray]:
        """Decoded camera images of a set (for sample pictures and the video)."""
        out = {}
        for name, msg in s.items.items():
            rgb = pipe.decode(name, msg)
            if rgb is not None:
                out[name] = rgb
        return out

    # -------------------------------------------------------------------------- references
    def _on_cloud(self, msg, ev: BevEvaluator, extr, record) -> None:
        try:
            pts, dropped = pointcloud2_to_array(msg, fields=("x", "y", "z"))
        except PointCloudError as exc:
            self._error("bad_pointcloud", str(exc))
            return
        if dropped:
            self.diag.count("non_finite_points", dropped)
        frame = msg.header.frame_id
        if frame == ev.grid.frame_id:
            pass
        elif extr is not None and frame == "lidar_top":
            pts = transform_points(pts, *extr)
        else:
            self._error("unknown_frame", f"point cloud in frame {frame!r}")
            return
        stamp = stamp_sec(msg.header)
        record(ev.add_points(stamp, pts))
        if self.fused_evaluator is not None:
            self.fused_evaluator.add_points(stamp, pts)

    def _on_boxes(self, msg, ev: BevEvaluator, record) -> None:
        try:
            boxes, frame = boxes_from_markers(msg)
        except ValueError as exc:
            self._error("bad_boxes", str(exc))
            return
        if boxes and frame != ev.grid.frame_id:
            self._error("unknown_frame", f"GT boxes in frame {frame!r}")
            return
        stamps = {stamp_sec(m.header) for m in msg.markers}
        if len(stamps) != 1:
            self._error("bad_boxes" if stamps else "empty_box_arrays",
                        f"markers with {len(stamps)} different stamps")
            return
        stamp = stamps.pop()
        record(ev.add_boxes(stamp, boxes))
        if self.fused_evaluator is not None:
            self.fused_evaluator.add_boxes(stamp, boxes)

    # ------------------------------------------------------------------------------ report
    def _fused_summary(self) -> dict[str, Any]:
        """Metrics of the fused grid against the same reference (empty without fusion)."""
        if self.fused_evaluator is None or self.fusion is None:
            return {}
        s = self.fused_evaluator.summary()
        return {"mean_iou": s.get("mean_iou", math.nan),
                "mean_precision": s.get("mean_precision", math.nan),
                "mean_recall": s.get("mean_recall", math.nan),
                "frames_evaluated": s.get("frame_count", 0),
                "fusion": self.fusion.stats.as_dict()}

    def _report(self) -> EvalReport:
        ev = self.evaluator
        summ: dict[str, Any] = dict(ev.summary()) if ev is not None else {}
        summ.pop("latency_p50_ms", None)
        summ.pop("latency_p90_ms", None)
        summ.pop("latency_p99_ms", None)
        lat = self.latency
        window = (self._t_last - self._t_first) if self._t_first and self._t_last else 0.0
        summ.update({
            "bag": str(self.bag),
            "weights": str(self.opts.weights) if self.opts.weights else "untrained",
            "backend": self.backend_name,
            "rig": self.rig_source,
            "reference": ReferenceKind.parse(self.opts.reference).name.lower(),
            "reference_description": ev.description if ev is not None else "",
            "threshold": self.opts.threshold,
            "frames_processed": self.processed,
            "frames_evaluated": len(self.frames),
            "latency_p50_ms": lat.p50,
            "latency_p90_ms": lat.p90,
            "latency_p99_ms": lat.p99,
            "latency_mean_ms": lat.mean,
            "wall_s": self.wall_s,  # whole run incl. model loading and warm-up
            "processing_s": window,
            "throughput_fps": self.processed / window if window > 0 else math.nan,
            "model_fps": self.processed / self.model_wall_s if self.model_wall_s > 0
            else math.nan,
            "fused": self._fused_summary(),
            "errors": self.errors,
            "last_errors": dict(self.diag.last_error),
            "counters": dict(self.diag.counters),
        })
        stages = {k: {"p50": s.p50, "p90": s.p90, "p99": s.p99, "mean": s.mean, "max": s.max,
                      "count": len(s)} for k, s in self.stage_stats.items()}
        return EvalReport(self.bag, None, self.frames, summ, stages, samples=self.samples)


def _objects_pose(poses: Any, stamp: float) -> Any:
    """The ``/odom`` pose at ``stamp`` as objects_node hands it to ObjectPipeline."""
    from lss_bev_ros.objects import Pose2D as ObjectsPose

    p = poses.lookup(stamp).pose if poses is not None else None
    return None if p is None else ObjectsPose(p.x, p.y, p.yaw, stamp)


def _score_objects(runner: ReplayEvaluator, report: EvalReport, opts: EvalOptions,
                   out_dir: str | Path | None) -> None:
    """Devkit scores of the run's objects (needs ``opts.dataroot`` for tokens and GT)."""
    import tempfile

    from rosbag_tools.objects_eval import score_objects

    run = runner.objects.run
    if opts.dataroot is None:
        report.summary["objects"] = {"frames": len(run.frames),
                                     "scored": "no --dataroot: objects not scored"}
        return
    target = Path(out_dir) / "objects" if out_dir is not None else Path(tempfile.mkdtemp())
    try:
        score_objects(run, Path(opts.dataroot), opts.dataset_version, target)
    except ValueError as exc:
        raise BagToolError(f"objects: {exc}") from exc
    report.summary["objects"] = {"frames": len(run.frames), **run.summary}
    report.files.update(run.files)


def evaluate_bag(bag: str | Path, out_dir: str | Path | None, opts: EvalOptions | None = None,
                 model: tuple[Any, Any] | None = None) -> EvalReport:
    """Run the offline evaluation; with ``out_dir`` write CSV/JSON/summary/plots (+ video).

    ``model``: ``(model, cfg)`` as :func:`load_model` returns it for ``opts``, already loaded
    (``lss-bev-bag eval-many`` loads weights once per worker); None: loaded from ``opts``."""
    opts = opts or EvalOptions()
    video = None
    if opts.video is not None:
        from rosbag_tools.report import VideoWriter

        video = VideoWriter(Path(opts.video), fps=opts.video_fps or None, threshold=opts.threshold,
                            reference=opts.reference)
    runner = ReplayEvaluator(bag, opts, on_frame=video.add if video is not None else None,
                             model=model)
    ok = False
    try:
        report = runner.run()
        if runner.objects is not None:
            _score_objects(runner, report, opts, out_dir)
        ok = True
    finally:
        if video is not None:
            video.close(success=ok)  # a failed run leaves no partial video behind
    if video is not None:
        report.files["video"] = video.path
    if out_dir is not None and opts.write_report:
        from rosbag_tools.report import write_report

        write_report(report, Path(out_dir))
    return report
