"""bev_node: multi-camera Lift-Splat-Shoot BEV segmentation -> nav_msgs/OccupancyGrid.

Glue only; the work is :class:`lss_bev_ros.bev_processor.BevProcessor` (ROS-free).

* Subscribes to N camera image topics (``sensor_msgs/Image`` or ``CompressedImage``) and their
  ``CameraInfo``; intrinsics come from CameraInfo, extrinsics from the rig calibration file,
  replaced per camera by ``/tf_static`` (``base_link -> ... -> camera frame``, composed by
  :class:`~lss_bev_ros.static_transforms.StaticTransformTree`; needs ``tf2_msgs``).
* Cameras are grouped by header stamp (:class:`~lss_bev_ros.sync.StampSynchronizer`). A camera
  that stops publishing is reported; policy ``mask`` keeps running on the others (the missing
  camera's frustum points are excluded), policy ``wait`` publishes nothing until it is back.
* Latest-wins: complete sets go through a :class:`~lss_bev_ros.sync.LatestSlot` to one worker
  thread; sets superseded before the worker takes them are dropped and counted. Subscriptions
  never wait for inference.
* Publishes the grid (stamp = input stamp), a coloured BEV image and ``PipelineTiming``.
"""

from __future__ import annotations

import array
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
from nav_msgs.msg import OccupancyGrid
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from lss_bev_ros.backends import parse_backend_options
from lss_bev_ros.bev_processor import (
    BevInputError,
    BevProcessor,
    jpeg_decode_reduction,
    make_backend,
)
from lss_bev_ros.calibration import (
    NUSCENES_CAMERAS,
    CalibrationError,
    CameraCalibration,
    RigCalibration,
    frame_id_for,
    load_rig_yaml,
    quaternion_to_matrix,
)
from lss_bev_ros.conversions import (
    ImageConversionError,
    image_to_rgb,
    probability_to_occupancy,
    rgb_to_image_bytes,
)
from lss_bev_ros.eval.metrics import LatencyStats
from lss_bev_ros.nodes.common import (
    ParamSpec,
    PerceptionNode,
    latched_qos,
    parses_with,
    run_node,
    sensor_qos,
    stamp_to_sec,
)
from lss_bev_ros.nodes.eval_node import wait_for_file
from lss_bev_ros.static_transforms import RigidTransform, StaticTransformTree
from lss_bev_ros.sync import LatestSlot, StampSynchronizer, SyncedSet
from lss_bev_ros.visualization import colorize_bev

try:  # /tf_static extrinsics: tf2_msgs has no PyPI wheel (tools/bootstrap.sh builds it)
    from tf2_msgs.msg import TFMessage  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the ROS install
    TFMessage = None

#: extrinsics from /tf_static closer than this to the rig file's keep the rig file's (m / rad)
TF_AGREES = 1e-5

BACKENDS = ("torch", "torch_compile", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
POLICIES = ("mask", "wait")


def _device(v: str) -> str | None:
    return None if v == "cpu" or v.startswith("cuda") else "must be 'cpu', 'cuda' or 'cuda:N'"


def _pattern(v: str) -> str | None:
    if not v.startswith("/"):
        return "must be an absolute topic (start with /)"
    if "{camera}" in v:
        return None
    return "must contain {camera} (the camera frame id, e.g. cam_front)"


def _topic(v: str) -> str | None:
    return None if v.startswith("/") else "must be an absolute topic (start with /)"


def _cameras(v: list) -> str | None:
    if not v:
        return "at least one camera needed"
    return None if len(set(v)) == len(v) else "camera names must be unique"


class BevNode(PerceptionNode):
    """Lifecycle node: cameras -> BEV OccupancyGrid + coloured image + timing."""

    PARAMS: tuple[ParamSpec, ...] = (
        ParamSpec("cameras", list(NUSCENES_CAMERAS), "camera names (rig order = model order)",
                  read_only=True, validator=_cameras),
        ParamSpec("input_type", "compressed", "subscribe to Image (raw) or "
                  "CompressedImage (compressed)", read_only=True, choices=("raw", "compressed")),
        ParamSpec("image_topic_template", "/cameras/{camera}/image_raw", "image topic per "
                  "camera; {camera} = frame id; '/compressed' appended for compressed input",
                  read_only=True, validator=_pattern),
        ParamSpec("camera_info_topic_template", "/cameras/{camera}/camera_info",
                  "CameraInfo topic per camera",
                  read_only=True, validator=_pattern),
        ParamSpec("rig_file", "", "rig calibration YAML (sensor -> base_link extrinsics, "
                  "written by lss-bev-bag convert / frame_player_node)", read_only=True),
        ParamSpec("rig_wait_s", 10.0, "on configure, wait this long for rig_file to appear "
                  "(launch starts the player that writes it in parallel)", read_only=True,
                  min=0.0, max=600.0),
        ParamSpec("use_tf_static", True, "take camera extrinsics from /tf_static where "
                  "published (overrides the rig file per camera)", read_only=True),
        ParamSpec("weights", "", "LSS checkpoint (.pt, loaded with weights_only=True); empty: "
                  "untrained model of 'model_config' (for plumbing tests only)",
                  read_only=True),
        ParamSpec("model_config", "small", "config of the untrained model when weights is empty",
                  read_only=True, choices=("small", "default")),
        ParamSpec("seed", 0, "random init seed of the untrained model", read_only=True),
        ParamSpec("backend", "torch", "inference backend", read_only=True, choices=BACKENDS),
        ParamSpec("device", "cpu", "torch device", read_only=True, validator=_device),
        ParamSpec("precision", "fp32", "inference precision", read_only=True,
                  choices=PRECISIONS),
        ParamSpec("backend_options", "", "extra backend options, 'key=value' pairs separated by "
                  "commas, e.g. 'mode=stages, bev_encoder=torch_bf16' (onnxruntime) or "
                  "'channels_last=true' (torch); see lss_bev_ros.backends", read_only=True,
                  validator=parses_with(parse_backend_options)),
        ParamSpec("cache_dir", "", "engine / export cache of non-torch backends",
                  read_only=True),
        ParamSpec("torch_threads", 0, "torch intra-op threads (0: torch default)",
                  read_only=True, min=0, max=256),
        ParamSpec("threshold", 0.5, "occupancy probability drawn as occupied", min=0.0,
                  max=1.0),
        ParamSpec("sync_tolerance_s", 0.05, "max header stamp spread within one camera set (s)",
                  min=0.0, max=1.0),
        ParamSpec("missing_timeout_s", 1.0, "a camera is missing once the other cameras' header "
                  "stamps have moved on this far without it (s of stamps, not wall time)",
                  min=0.05, max=60.0),
        ParamSpec("time_jump_s", 5.0, "an image stamp this much older than the newest (bag "
                  "looped or restarted) restarts synchronisation (s)", min=0.1, max=86400.0),
        ParamSpec("missing_camera_policy", "mask", "mask: run on the other cameras (missing "
                  "camera's features excluded); wait: publish nothing until it is back",
                  choices=POLICIES),
        ParamSpec("output_frame", "base_link", "frame of the grid", read_only=True),
        ParamSpec("occupancy_topic", "/bev/occupancy", "OccupancyGrid output", read_only=True,
                  validator=_topic),
        ParamSpec("bev_image_topic", "/bev/image", "coloured BEV image output", read_only=True,
                  validator=_topic),
        ParamSpec("timing_topic", "/bev/timing", "PipelineTiming output", read_only=True,
                  validator=_topic),
        ParamSpec("publish_image", True, "publish the coloured BEV image"),
        ParamSpec("image_scale", 2, "BEV image up-scaling (pixels per cell)", min=1, max=8),
        ParamSpec("decode_reduction", 0, "compressed input: decode JPEGs at 1/k size (libjpeg "
                  "DCT scaling, intrinsics scaled to match); 0: auto = the largest k that keeps "
                  "twice the model's resize target; 1: full size", read_only=True,
                  choices=(0, 1, 2, 4, 8)),
        ParamSpec("warmup", True, "run one dummy frame on activate", read_only=True),
        ParamSpec("qos_reliable", False, "reliable (instead of best-effort) camera "
                  "subscriptions", read_only=True),
        ParamSpec("qos_depth", 2, "camera subscription queue depth", read_only=True, min=1,
                  max=100),
    )

    def __init__(self, **kwargs) -> None:
        super().__init__("bev_node", self.PARAMS, **kwargs)
        self.rig: RigCalibration | None = None
        self.cfg = None  # LSSConfig of the loaded model
        self.processor: BevProcessor | None = None
        self.backend = None
        self.sync: StampSynchronizer | None = None
        self.slot: LatestSlot | None = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._subs: list = []
        self._timer = None
        self._pubs: dict = {}
        self._infos: dict[str, tuple] = {}
        self._missing: tuple[str, ...] = ()
        self._no_input = False
        self._reductions: dict[str, int] = {}
        self._tf_tree = StaticTransformTree()
        self._tf_lock = threading.Lock()
        self._tf_sub = None
        self._tf_applied = 0  # tree version last applied to the rig
        self.latency = LatencyStats(500)  # input stamp -> publish, node clock (ms)
        self.node_latency = LatencyStats(500)  # set complete -> publish, monotonic (ms)
        self.frames_processed = 0
        self._last_arrival: float | None = None  # monotonic time of the last image (s)
        self.last_stage_ms: dict[str, float] = {}

    # -- lifecycle --------------------------------------------------------------------------
    def on_configure_impl(self) -> None:
        cams = list(self.p("cameras"))
        weights = self.p("weights")
        if weights and not Path(weights).is_file():
            raise RuntimeError(f"weights file not found: {weights} (train one with "
                               "lss-bev-train, or leave weights empty for an untrained model)")
        rig_file = self.p("rig_file")
        if not rig_file:
            raise RuntimeError("parameter rig_file is empty: the BEV node needs the camera "
                               "extrinsics (write one with lss-bev-bag convert or "
                               "frame_player_node rig_file_out)")
        wait_for_file(rig_file, float(self.p("rig_wait_s")))
        try:
            self.rig = load_rig_yaml(rig_file).subset(cams)
        except CalibrationError as exc:
            raise RuntimeError(f"rig calibration: {exc}") from exc
        self.diag.set("extrinsics_source", f"rig_file {rig_file}")
        if self.p("use_tf_static"):
            if TFMessage is None:
                self.get_logger().info("tf2_msgs not importable: extrinsics from rig_file only")
            elif self._tf_sub is None:
                self._tf_sub = self.create_subscription(TFMessage, "/tf_static",
                                                        self._on_tf_static, latched_qos(100))
        reliable = QoSProfile(depth=5)
        self._pubs = {
            "grid": self.create_publisher(OccupancyGrid, self.p("occupancy_topic"), reliable),
            "image": self.create_publisher(Image, self.p("bev_image_topic"), reliable),
            "timing": self.create_publisher(
                self._timing_type(), self.p("timing_topic"), reliable),
        }
        self.diag.set("cameras", ",".join(cams))

    @staticmethod
    def _timing_type():
        from lss_bev_ros.msg import PipelineTiming

        return PipelineTiming

    def _load_model(self):
        import torch

        weights = self.p("weights")
        if weights:
            from lss_bev_ros.lss.checkpoint import load_checkpoint

            model, cfg, _extra = load_checkpoint(weights)
            self.diag.set("model", f"checkpoint {weights}")
            return model, cfg
        from lss_bev_ros.lss.config import LSSConfig
        from lss_bev_ros.lss.model import LiftSplatShoot

        cfg = LSSConfig.small() if self.p("model_config") == "small" else LSSConfig.default()
        torch.manual_seed(int(self.p("seed")))
        model = LiftSplatShoot(cfg)
        self.get_logger().warning(
            "weights is empty: running an UNTRAINED LSS model (random init) - output is "
            "meaningless; set 'weights' to a trained checkpoint")
        self.diag.set("model", f"untrained {self.p('model_config')}")
        return model, cfg

    def on_activate_impl(self) -> None:
        try:
            self._activate()
        except BaseException:
            self.on_deactivate_impl()  # no half-active state: stop what was started
            raise

    def _activate(self) -> None:
        import torch

        if self.rig is None:
            raise RuntimeError("not configured")
        if int(self.p("torch_threads")) > 0:
            torch.set_num_threads(int(self.p("torch_threads")))
        model, cfg = self._load_model()
        cache = self.p("cache_dir") or None
        extra = {"cache_dir": Path(cache)} if cache else {}
        extra.update(parse_backend_options(self.p("backend_options")))
        self.backend = make_backend(self.p("backend"), model, self.p("device"),
                                    self.p("precision"), **extra)
        self.cfg = cfg
        self.processor = BevProcessor(self.backend, cfg, self._processing_rig(),
                                      float(self.p("threshold")))
        self.diag.set("backend", getattr(self.backend, "name", self.p("backend")))
        if self.p("warmup"):
            t0 = time.perf_counter()
            blank = {c.name: np.zeros((c.height, c.width, 3), np.uint8)
                     for c in self.processor.rig.cameras}
            self.processor.process(blank, 0.0)
            self.get_logger().info(f"warm-up frame took {(time.perf_counter() - t0) * 1e3:.0f} ms")
        names = tuple(self.rig.names)
        self.sync = self._make_sync()
        self._last_arrival = None
        self.slot = LatestSlot()
        self._missing = ()
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="bev_worker", daemon=True)
        self._worker.start()
        group = MutuallyExclusiveCallbackGroup()
        qos = sensor_qos(depth=int(self.p("qos_depth")), reliable=bool(self.p("qos_reliable")))
        compressed = self.p("input_type") == "compressed"
        for name in names:
            fid = self.rig.camera(name).frame_id or frame_id_for(name)
            topic = self.p("image_topic_template").replace("{camera}", fid)
            if compressed:
                topic += "/compressed"
            self._subs.append(self.create_subscription(
                CompressedImage if compressed else Image, topic,
                lambda m, n=name: self._on_image(n, m), qos, callback_group=group))
            self._subs.append(self.create_subscription(
                CameraInfo, self.p("camera_info_topic_template").replace("{camera}", fid),
                lambda m, n=name: self._on_info(n, m), qos, callback_group=group))
        # same group as the subscriptions: _monitor never runs during an add()
        self._timer = self.create_timer(0.1, self._monitor, callback_group=group)
        self.get_logger().info(
            f"active: {len(names)} cameras ({self.p('input_type')}), backend "
            f"{self.diag.values.get('backend')}, policy {self.p('missing_camera_policy')}")

    def _make_sync(self) -> StampSynchronizer:
        """The camera synchroniser, clocked by image stamps (see ``_on_image``)."""
        return StampSynchronizer(
            tuple(self.rig.names), tolerance=float(self.p("sync_tolerance_s")), queue_size=4,
            missing_timeout=float(self.p("missing_timeout_s")),
            allow_partial=self.p("missing_camera_policy") == "mask",
            missing_needs_activity=True,
        )

    def on_deactivate_impl(self) -> None:
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs = []
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        self._stop.set()
        if self.slot is not None:
            self.slot.close()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None
        self.processor = None
        self.backend = None
        self.cfg = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass

    def on_cleanup_impl(self) -> None:
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}
        self.rig = None
        if self._tf_sub is not None:
            self.destroy_subscription(self._tf_sub)
            self._tf_sub = None
        self._tf_applied = 0

    def on_params_applied(self, changed: dict) -> None:
        if "threshold" in changed and self.processor is not None:
            self.processor.threshold = float(changed["threshold"])
        sync = self.sync
        if sync is not None:
            if "sync_tolerance_s" in changed:
                sync.tolerance = float(changed["sync_tolerance_s"])
            if "missing_timeout_s" in changed:
                sync.missing_timeout = float(changed["missing_timeout_s"])
            if "missing_camera_policy" in changed:
                sync.allow_partial = changed["missing_camera_policy"] == "mask"
                self._missing = ()  # re-announce the state under the new policy

    # -- calibration ------------------------------------------------------------------------
    def _current_rig(self) -> RigCalibration:
        """Rig with the latest CameraInfo intrinsics applied (full image size)."""
        rig = self.rig
        for name, (k, w, h) in list(self._infos.items()):
            rig = rig.replace_camera(rig.camera(name).with_intrinsics(np.array(k).reshape(3, 3),
                                                                       w, h))
        return rig

    def _reduction(self, cam: CameraCalibration) -> int:
        """JPEG decode reduction for ``cam`` (1 for raw input)."""
        k = int(self.p("decode_reduction"))
        if self.p("input_type") != "compressed" or k == 1 or self.cfg is None:
            return 1
        return jpeg_decode_reduction(cam, self.cfg.image.final_dim, k)

    def _processing_rig(self) -> RigCalibration:
        """Rig as the processor sees it: intrinsics / sizes of the *decoded* images."""
        rig = self._current_rig()
        reductions = {c.name: self._reduction(c) for c in rig.cameras}
        for cam in rig.cameras:
            f = reductions[cam.name]
            if f > 1:
                w, h = math.ceil(cam.width / f), math.ceil(cam.height / f)
                k = cam.intrinsics.copy()
                k[0] *= w / cam.width
                k[1] *= h / cam.height
                rig = rig.replace_camera(cam.with_intrinsics(k, w, h))
        self._reductions = reductions
        return rig

    def _on_info(self, name: str, msg: CameraInfo) -> None:
        key = (tuple(float(v) for v in msg.k), int(msg.width), int(msg.height))
        if self._infos.get(name) == key:
            return
        k = np.array(key[0]).reshape(3, 3)
        if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0 or key[1] <= 0 or key[2] <= 0:
            self.diag.error("bad_camera_info", f"{name}: invalid K {key[0]} or size "
                            f"{key[1]}x{key[2]}; keeping the previous intrinsics")
            return
        self._infos[name] = key
        self.diag.count("camera_info_updates")
        if self.processor is not None and self.rig is not None:
            self.processor.set_rig(self._processing_rig())

    def _on_tf_static(self, msg) -> None:
        """Edges of the static tree (latched topic: every publisher's full set on connect)."""
        for tr in msg.transforms:
            q, t = tr.transform.rotation, tr.transform.translation
            try:
                tf = RigidTransform(quaternion_to_matrix([q.w, q.x, q.y, q.z]),
                                    np.array([t.x, t.y, t.z]))
                with self._tf_lock:
                    self._tf_tree.set(tr.header.frame_id, tr.child_frame_id, tf)
            except ValueError as exc:  # CalibrationError (bad quaternion) included
                self.diag.error("bad_tf", f"/tf_static {tr.header.frame_id} -> "
                                f"{tr.child_frame_id}: {exc}; edge ignored")

    def _update_from_tf(self) -> None:
        """Apply /tf_static camera extrinsics (``output_frame`` <- camera frame) to the rig when
        the tree changed; values within ``TF_AGREES`` of the current ones are kept as they are
        (no index rebuild for a tree that repeats the rig file)."""
        if self.rig is None or self._tf_tree.version == self._tf_applied:
            return
        base = self.p("output_frame")
        changed = False
        with self._tf_lock:
            self._tf_applied = self._tf_tree.version
            found = {}
            for cam in self.rig.cameras:
                try:
                    found[cam.name] = self._tf_tree.lookup(base, cam.frame_id or
                                                           frame_id_for(cam.name))
                except LookupError:
                    continue
        for name, tf in found.items():
            cam = self.rig.camera(name)
            d_t = float(np.abs(tf.translation - cam.translation).max())
            cos = (np.trace(tf.rotation.T @ cam.rotation) - 1.0) / 2.0
            d_r = float(np.arccos(np.clip(cos, -1.0, 1.0)))
            if d_t <= TF_AGREES and d_r <= TF_AGREES:
                continue
            self.get_logger().info(f"{name}: extrinsics from /tf_static ({base} <- "
                                   f"{cam.frame_id}), {math.degrees(d_r):.3f} deg / {d_t:.3f} m "
                                   "from the previous ones")
            self.rig = self.rig.replace_camera(CameraCalibration(
                cam.name, cam.width, cam.height, cam.intrinsics, tf.rotation, tf.translation,
                cam.frame_id))
            changed = True
        n = len(found)  # edges are never removed: every camera found before is found again
        self.diag.set("extrinsics_source", f"tf_static for {n} of {len(self.rig.names)} cameras"
                      + (", rig_file for the others" if n < len(self.rig.names) else ""))
        if changed and self.processor is not None:
            self.processor.set_rig(self._processing_rig())

    # -- input ------------------------------------------------------------------------------
    def _on_image(self, name: str, msg) -> None:
        """Offer one image to the synchroniser.

        The synchroniser's clock is the newest image *stamp*, not wall time: a camera is missing
        when the others' stamps have moved on by more than ``missing_timeout_s`` without it (and
        on once more, so that the first image after a stamp gap does not make the rest of its
        set look missing). A paused, slowed-down or CPU-starved replay, a gap in the stamps or a
        slow lock-step publisher never makes cameras look missing. A stamp far older than the
        newest (``time_jump_s``: bag looped or restarted) restarts synchronisation instead of
        rejecting everything as out of order.
        """
        sync = self.sync
        if sync is None or not self.active:
            return
        stamp = stamp_to_sec(msg.header.stamp)
        if stamp < sync.stamp_clock - float(self.p("time_jump_s")):
            self.diag.error("time_jump", f"{name}: stamp {stamp:.3f} is "
                            f"{sync.stamp_clock - stamp:.1f} s older than the newest; "
                            "restarting synchronisation")
            sync = self.sync = self._make_sync()
            self._missing = ()
        self._last_arrival = time.monotonic()
        before = sync.stats.out_of_order
        out = sync.add_stamped(name, stamp, msg)
        if sync.stats.out_of_order != before:
            self.diag.error("out_of_order_stamp", f"{name}: stamp {stamp:.6f} is not newer than "
                            "the last processed set / its queue; dropped")
        if out is not None:
            self._hand_off(out)

    def _hand_off(self, s: SyncedSet) -> None:
        # with its completion time: the node latency is measured from here
        if self.slot is not None and self.slot.put((s, time.monotonic())):
            self.diag.count("frames_dropped")

    def _monitor(self) -> None:
        """10 Hz: missing-camera and no-input reporting, tf, diagnostics."""
        sync = self.sync
        if sync is None:
            return
        self._update_from_tf()
        st = sync.stats
        self.diag.set("sync_sets", st.emitted_sets)
        self.diag.set("sync_partial_sets", st.partial_sets)
        self.diag.set("sync_evicted_messages", st.evicted)
        silent = (self._last_arrival is not None
                  and time.monotonic() - self._last_arrival > sync.missing_timeout)
        if silent:
            # every camera silent (paused source, rate below the timeout): no input, which is
            # not "some cameras missing"; the last per-camera state is kept
            if not self._no_input:
                self._no_input = True
                self.get_logger().info(f"no camera input for {sync.missing_timeout:.2f} s")
            self.diag.set("no_input", True)
            return
        self._no_input = False
        self.diag.set("no_input", False)
        missing = sync.missing_sources(sync.stamp_clock)
        policy = self.p("missing_camera_policy")
        if missing != self._missing:
            if missing:
                what = ("continuing with the other cameras, its features masked"
                        if policy == "mask" else "WAITING: no output until it is back")
                self.diag.error("camera_missing", f"no image from {', '.join(missing)} while "
                                f"the others' stamps moved on by > {sync.missing_timeout:.2f} s; "
                                f"policy {policy}: {what}", throttle_s=0.0)
            elif self._missing:
                self.get_logger().info(f"cameras back: {', '.join(self._missing)}")
            self._missing = missing
        elif missing and policy == "wait":
            self.get_logger().warning(f"waiting for cameras {', '.join(missing)}",
                                      throttle_duration_sec=5.0)
        self.diag.set("missing_cameras", ",".join(missing) if missing else "none")
        self.diag.set("waiting", bool(missing and policy == "wait"))

    # -- worker -----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.slot.take(timeout=0.2) if self.slot is not None else None
            if item is None:
                continue
            try:
                self._process(*item)
            except Exception as exc:
                self.diag.error("processing_failed", f"{type(exc).__name__}: {exc}")

    def _convert(self, name: str, msg) -> np.ndarray | None:
        """Message -> RGB at the processing size; None (error counted and logged) if bad."""
        cam = self.processor.rig.camera(name)
        expected = (cam.height, cam.width)
        f = self._reductions.get(name, 1)
        try:
            if isinstance(msg, CompressedImage):
                rgb = _decode_jpeg(msg, f)
                if rgb is None:
                    self.diag.error("corrupt_image", (
                        f"{name}: could not decode compressed image (format {msg.format!r}, "
                        f"{len(msg.data)} bytes): corrupt or truncated; camera masked"))
                    return None
            else:
                try:
                    rgb = image_to_rgb(msg)
                except ImageConversionError as exc:
                    key = "bad_encoding" if "encoding" in str(exc) else "bad_image"
                    self.diag.error(key, f"{name}: {exc}; camera masked")
                    return None
            if rgb.shape[:2] != expected:
                how = f" (decoded at 1/{f})" if f > 1 else ""
                self.diag.error("bad_image_size", (
                    f"{name}: image is {rgb.shape[1]}x{rgb.shape[0]}{how}, expected "
                    f"{expected[1]}x{expected[0]} from its calibration (CameraInfo / rig); "
                    "camera masked"))
                return None
        except Exception as exc:  # any malformed message
            self.diag.error("bad_image", f"{name}: {type(exc).__name__}: {exc}")
            return None
        return rgb

    def _process(self, s: SyncedSet, t_in: float) -> None:
        """One synchronised set (completed at monotonic ``t_in``, s) -> grid, image, timing."""
        proc = self.processor
        if proc is None:
            return
        t0 = time.perf_counter()
        images: dict[str, np.ndarray] = {}
        for name, msg in s.items.items():
            rgb = self._convert(name, msg)
            if rgb is not None:
                images[name] = rgb
        failed = [n for n in s.items if n not in images]
        policy = self.p("missing_camera_policy")
        if failed and policy == "wait":
            self.diag.count("frames_skipped")
            return
        if not images:
            self.diag.count("frames_skipped")
            return
        # exact header stamp of the newest image: the output stamp
        ref_msg = max(s.items.values(), key=lambda m: stamp_to_sec(m.header.stamp))
        stamp_msg = ref_msg.header.stamp
        t_conv = time.perf_counter()
        try:
            out = proc.process(images, s.stamp, missing=tuple(s.missing) + tuple(failed))
        except BevInputError as exc:
            self.diag.error("bad_input", str(exc))
            return
        t_proc = time.perf_counter()
        frame = self.p("output_frame")
        grid = OccupancyGrid()
        grid.header.stamp = stamp_msg
        grid.header.frame_id = frame
        g = proc.grid
        grid.info.map_load_time = stamp_msg
        grid.info.resolution = float(g.resolution)
        grid.info.width, grid.info.height = int(g.nx), int(g.ny)
        grid.info.origin.position.x, grid.info.origin.position.y = float(g.xmin), float(g.ymin)
        grid.info.origin.orientation.w = 1.0
        occ = probability_to_occupancy(out.probability, out.visible)
        grid.data = array.array("b", occ.tobytes())
        self._pubs["grid"].publish(grid)
        if self.p("publish_image"):
            rgb = colorize_bev(out.probability, out.visible, threshold=proc.threshold,
                               scale=int(self.p("image_scale")), resolution=g.resolution,
                               grid_origin=(g.xmin, g.ymin))
            img = Image()
            img.header.stamp = stamp_msg
            img.header.frame_id = frame
            img.height, img.width, img.step, data = rgb_to_image_bytes(rgb)
            img.encoding = "rgb8"
            img.data = data
            self._pubs["image"].publish(img)
        t_pub = time.perf_counter()
        stages: OrderedDict[str, float] = OrderedDict()
        stages["convert"] = (t_conv - t0) * 1e3
        stages.update(out.stage_ms)
        stages["publish"] = (t_pub - t_proc) * 1e3
        total_ms = (t_pub - t0) * 1e3
        latency_ms = self.stamp_latency_ms(s.stamp)
        node_latency_ms = (time.monotonic() - t_in) * 1e3
        self.frames_processed += 1
        self.latency.add(latency_ms)
        self.node_latency.add(node_latency_ms)
        self.last_stage_ms = dict(stages)
        dropped = self.slot.dropped if self.slot is not None else 0
        self._pubs["timing"].publish(self.timing_msg(
            stamp_msg, stages, total_ms, latency_ms, self.diag.values.get("backend", ""),
            frame_id=frame, processed=self.frames_processed, dropped=dropped,
            node_latency_ms=node_latency_ms))
        self.diag.count("frames_processed")
        if out.missing:
            self.diag.count("frames_with_masked_cameras")
        self.diag.set("latency_p50_ms", f"{self.latency.p50:.1f}")
        self.diag.set("latency_p99_ms", f"{self.latency.p99:.1f}")
        self.diag.set("node_latency_p50_ms", f"{self.node_latency.p50:.1f}")
        self.diag.set("node_latency_p99_ms", f"{self.node_latency.p99:.1f}")
        self.diag.set("total_ms", f"{total_ms:.1f}")
        for k, v in stages.items():
            self.diag.set(f"stage_ms.{k}", f"{v:.1f}")


_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                  4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def _decode_jpeg(msg, reduction: int = 1) -> np.ndarray | None:
    """CompressedImage -> H x W x 3 RGB decoded at 1/``reduction`` size; None if undecodable."""
    raw = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8)
    if raw.size == 0:
        return None
    bgr = cv2.imdecode(raw, _REDUCED_FLAGS[reduction])
    if bgr is None:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def main(args: list[str] | None = None) -> int:
    """``ros2 run lss_bev_ros bev_node``."""
    return run_node(BevNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
