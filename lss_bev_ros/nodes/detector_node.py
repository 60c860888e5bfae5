"""detector_node: batched multi-camera YOLO + per-camera ByteTrack.

Glue: one ``sensor_msgs/Image`` (or ``CompressedImage``) topic per camera
(:class:`~lss_bev_ros.nodes.camera_input.CameraSetInput`, the same input model as bev_node),
grouped by header stamp (:class:`~lss_bev_ros.sync.StampSynchronizer`; late, offset and missing
cameras named), the newest set to one worker thread (latest wins), then
:class:`~lss_bev_ros.detection.pipeline.DetectionPipeline` (ONE batched YOLO pass, per-camera
ByteTrack: the core the quality benchmark runs too). Publishes per camera

* ``<output_prefix>/<cam>``: ``lss_bev_ros/Detection2DArray`` (stamp = image stamp, frame_id =
  camera optical frame, e.g. ``cam_front``; boxes in original-image pixels, with track ids),
* ``<output_prefix>/<cam>/image``: annotated ``sensor_msgs/Image`` (rgb8),

plus ``<output_prefix>/markers`` (``visualization_msgs/MarkerArray``: one bearing ray per
detection through its box centre and a text label ``car #12`` at the ray's end. With
``rig_file`` the rays are in ``base_link``; otherwise in each camera's optical frame using the
intrinsics of its ``camera_info`` topic. A monocular box has no range: the ray length is the
``marker_ray_length_m`` parameter, not a distance estimate) and ``<output_prefix>/timing``
(``PipelineTiming``: preprocess = decode + letterbox, inference = forward + NMS, tracking,
publish). Bad input (encoding, corrupt JPEG, size, missing camera, out-of-order stamps) is
logged, counted on ``/diagnostics`` and skipped; the node keeps running.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import Marker, MarkerArray

from lss_bev_ros.calibration import (
    NUSCENES_CAMERAS,
    CalibrationError,
    RigCalibration,
    frame_id_for,
    load_rig_yaml,
)
from lss_bev_ros.conversions import (
    ConversionError,
    ImageConversionError,
    compressed_to_rgb,
    image_to_rgb,
    rgb_to_image_bytes,
)
from lss_bev_ros.detection.detector import (
    WEIGHT_SUFFIXES,
    BatchedDetector,
    DetectorConfig,
    DetectorLoadError,
)
from lss_bev_ros.detection.pipeline import DetectionPipeline
from lss_bev_ros.detection.tracking import TrackerConfig
from lss_bev_ros.detection.types import Detections
from lss_bev_ros.detection.visualize import annotate, bearing_rays, color_for, label_text
from lss_bev_ros.msg import Detection2D, Detection2DArray, PipelineTiming
from lss_bev_ros.nodes.camera_input import CameraSetInput
from lss_bev_ros.nodes.common import (
    ParamSpec,
    PerceptionNode,
    camera_template_error,
    cameras_error,
    device_error,
    parses_with,
    run_node,
    sensor_qos,
    stamp_to_sec,
    topic_error,
)
from lss_bev_ros.sync import StampSynchronizer, SyncedSet

DEFAULT_WEIGHTS = "models/yolo_synth/yolo11n_synth.onnx"
"""ONNX: a graph + literal metadata, loading it runs no code (a .pt is unpickled: see
``allow_pickled_weights``)."""


def _weights(v: str) -> str | None:
    """Syntax only: existence is checked at configure (clear lifecycle error) and on live sets."""
    if not str(v).strip():
        return "empty"
    suffix = Path(str(v)).suffix.lower()
    return None if suffix in WEIGHT_SUFFIXES else f"unsupported suffix {suffix!r}"


def parse_classes(text: str, names: dict[int, str] | None = None) -> tuple[int, ...] | None:
    """``"car, 3"`` -> class indices (names need ``names``); empty -> None (all classes)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        return None
    by_name = {v: k for k, v in (names or {}).items()}
    out = []
    for p in parts:
        if p.lstrip("-").isdigit():
            idx = int(p)
            if idx < 0 or (names is not None and idx not in names):
                raise ValueError(f"class index {idx} out of range")
            out.append(idx)
        elif names is None:
            out.append(-1)  # syntax check only; resolved once the model's names are known
        elif p in by_name:
            out.append(by_name[p])
        else:
            raise ValueError(f"unknown class {p!r} (model has {sorted(by_name)})")
    return tuple(out)


def _imgsz(v: int) -> str | None:
    return None if v % 32 == 0 else "must be a multiple of 32"


_DETECTOR_PARAMS = {"imgsz", "conf_threshold", "iou_threshold", "classes", "half", "device",
                    "max_det", "tracking", "track_low_thresh", "cpu_threads"}
_TRACKER_PARAMS = {"track_high_thresh", "track_low_thresh", "new_track_thresh", "track_buffer",
                   "match_thresh"}
_SYNC_PARAMS = {"sync_tolerance_s", "missing_timeout_s", "allow_partial"}


def detections_msg(stamp, camera: str, d: Detections, names: dict) -> Detection2DArray:
    """Detections of one image -> ``Detection2DArray`` (frame_id = camera optical frame)."""
    msg = Detection2DArray()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id_for(camera)
    msg.camera_name = camera
    msg.image_height, msg.image_width = int(d.image_size[0]), int(d.image_size[1])
    xywh = d.xywh.tolist()
    cls, conf, tid = d.cls.tolist(), d.conf.tolist(), d.track_id.tolist()
    msg.detections = [
        Detection2D(class_id=c, label=str(names.get(c, c)), score=s, center_x=b[0],
                    center_y=b[1], size_x=b[2], size_y=b[3], track_id=t)
        for b, c, s, t in zip(xywh, cls, conf, tid, strict=True)
    ]
    return msg


def image_msg(stamp, frame_id: str, rgb: np.ndarray) -> Image:
    """H x W x 3 uint8 RGB -> ``sensor_msgs/Image`` rgb8."""
    h, w, step, data = rgb_to_image_bytes(rgb)
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width, msg.step, msg.encoding = h, w, step, "rgb8"
    msg.data = data
    return msg


@dataclass
class _Frame:
    """One camera of a set after decoding."""

    name: str
    msg: Any  # Image or CompressedImage (header is copied to the outputs)
    rgb: np.ndarray


class DetectorNode(PerceptionNode):
    """Lifecycle node: N camera topics -> batched YOLO -> ByteTrack -> detections per camera."""

    PARAMS: tuple[ParamSpec, ...] = (
        ParamSpec("cameras", list(NUSCENES_CAMERAS), "camera names (frame id = lower case)",
                  read_only=True, validator=cameras_error),
        ParamSpec("input_type", "raw", "subscribe to sensor_msgs/Image ('raw') or "
                  "CompressedImage ('compressed', topic + '/compressed')", read_only=True,
                  choices=("raw", "compressed")),
        ParamSpec("image_topic_template", "/cameras/{camera}/image_raw", "image topic per "
                  "camera; {camera} = frame id", read_only=True, validator=camera_template_error),
        ParamSpec("camera_info_topic_template", "/cameras/{camera}/camera_info", "CameraInfo "
                  "per camera (intrinsics for markers when no rig_file)", read_only=True,
                  validator=camera_template_error),
        ParamSpec("output_prefix", "/detections", "outputs: <prefix>/<cam>, <prefix>/<cam>/"
                  "image, <prefix>/markers, <prefix>/timing", read_only=True,
                  validator=topic_error),
        ParamSpec("weights", DEFAULT_WEIGHTS, "YOLO weights: .onnx (dynamic batch; default), "
                  ".engine (TensorRT), a model .yaml (untrained), or .pt / .torchscript only "
                  f"with allow_pickled_weights; one of {sorted(WEIGHT_SUFFIXES)}",
                  validator=_weights, unconfigured_only=True),
        ParamSpec("allow_pickled_weights", False, "allow .pt / .torchscript weights. RISK: "
                  "ultralytics unpickles them, which runs any Python code embedded in the "
                  "file; enable only for files you made or trust (export to .onnx instead: "
                  "lss-bev-export-yolo W.pt --format onnx)", read_only=True),
        ParamSpec("imgsz", 640, "network input size, pixels (long side, multiple of 32)",
                  min=32, max=4096, validator=_imgsz),
        ParamSpec("conf_threshold", 0.25, "minimum score of a published detection (with "
                  "tracking the detector runs down to track_low_thresh; lower-score boxes are "
                  "published only when they continue a track)", min=0.0, max=1.0),
        ParamSpec("iou_threshold", 0.45, "NMS IoU threshold", min=0.0, max=1.0),
        ParamSpec("classes", "", "comma-separated class names or indices to keep; empty: all",
                  validator=parses_with(parse_classes)),
        ParamSpec("max_det", 300, "maximum detections per image", min=1, max=10000),
        ParamSpec("half", False, "FP16 inference where the backend supports it (not on CPU)"),
        ParamSpec("device", "cpu", "inference device: cpu, cuda, cuda:N", validator=device_error),
        ParamSpec("cpu_threads", 0, "torch CPU threads for inference (0: ultralytics' default, "
                  "cores - 1)", min=0, max=256),
        ParamSpec("inference_every", 1, "run inference on every k-th synchronised set; the "
                  "others are skipped (counted)", min=1, max=1000),
        ParamSpec("tracking", True, "ByteTrack per camera (false: all track ids are -1)"),
        ParamSpec("track_high_thresh", 0.25, "ByteTrack first-association score", min=0.0,
                  max=1.0),
        ParamSpec("track_low_thresh", 0.1, "ByteTrack second-association score", min=0.0,
                  max=1.0),
        ParamSpec("new_track_thresh", 0.25, "score to start a new track", min=0.0, max=1.0),
        ParamSpec("track_buffer", 30, "processed frames a lost track is kept (occlusions)",
                  min=1, max=10000),
        ParamSpec("match_thresh", 0.8, "ByteTrack association cost threshold (1 - IoU)",
                  min=0.0, max=1.0),
        ParamSpec("sync_tolerance_s", 0.05, "max stamp spread within one camera set (s)",
                  min=0.0, max=10.0),
        ParamSpec("missing_timeout_s", 1.0, "a camera is missing when the other cameras' "
                  "stamps moved on this long without it (s, stamp time)", min=0.01, max=60.0),
        ParamSpec("time_jump_s", 5.0, "stamps of most cameras this much older than their "
                  "newest restart synchronisation and tracking (bag loop / restart), s",
                  min=0.1, max=1e6),
        ParamSpec("allow_partial", True, "process sets without the missing cameras"),
        ParamSpec("expected_width", 0, "reject images of another width (0: any), pixels",
                  min=0, max=100000),
        ParamSpec("expected_height", 0, "reject images of another height (0: any), pixels",
                  min=0, max=100000),
        ParamSpec("rig_file", "", "rig calibration YAML: markers as bearing rays in base_link "
                  "(empty: rays in the camera frames from camera_info)", read_only=True),
        ParamSpec("publish_annotated", True, "publish annotated images"),
        ParamSpec("annotated_scale", 0.5, "annotated image size relative to the input",
                  min=0.05, max=1.0),
        ParamSpec("publish_markers", True, "publish RViz markers"),
        ParamSpec("marker_ray_length_m", 20.0, "length of the bearing rays (m)", min=0.1,
                  max=500.0),
        ParamSpec("marker_lifetime_s", 1.0, "marker lifetime (s, 0 = forever)", min=0.0,
                  max=3600.0),
        ParamSpec("qos_depth", 1, "input queue depth (keep-last)", min=1, max=100,
                  read_only=True),
        ParamSpec("qos_reliable", False, "reliable (instead of best-effort) image "
                  "subscriptions", read_only=True),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("detector_node", self.PARAMS, **kwargs)
        self._lock = threading.Lock()
        self.cameras: tuple[str, ...] = tuple(self.p("cameras"))
        self.detector: BatchedDetector | None = None
        self.pipeline: DetectionPipeline | None = None
        self.sync: StampSynchronizer[Any] | None = None
        self.input: CameraSetInput | None = None
        self.rig: RigCalibration | None = None
        self._camera_k: dict[str, tuple[np.ndarray, int, int]] = {}
        self._pubs: dict[str, Any] = {}
        self._img_pubs: dict[str, Any] = {}
        self._marker_pub: Any = None
        self._timing_pub: Any = None
        self._set_counter = 0
        self.frames_processed = 0
        self.add_on_set_parameters_callback(self._check_live_params)

    # -- configuration helpers ---------------------------------------------------------------
    def _detector_config(self, names: dict[int, str] | None) -> DetectorConfig:
        return DetectorConfig(
            weights=str(self.p("weights")),
            imgsz=int(self.p("imgsz")),
            conf=self._detection_pipeline_conf(),
            iou=float(self.p("iou_threshold")),
            classes=parse_classes(self.p("classes"), names) if names is not None else None,
            half=bool(self.p("half")),
            device=str(self.p("device")),
            max_det=int(self.p("max_det")),
            cpu_threads=int(self.p("cpu_threads")),
            allow_pickle=bool(self.p("allow_pickled_weights")),
        )

    def _detection_pipeline_conf(self) -> float:
        from lss_bev_ros.detection.tracking import detector_conf

        return detector_conf(float(self.p("conf_threshold")), bool(self.p("tracking")),
                             self._tracker_config())

    def _tracker_config(self) -> TrackerConfig:
        return TrackerConfig(
            track_high_thresh=float(self.p("track_high_thresh")),
            track_low_thresh=float(self.p("track_low_thresh")),
            new_track_thresh=float(self.p("new_track_thresh")),
            track_buffer=int(self.p("track_buffer")),
            match_thresh=float(self.p("match_thresh")),
        )

    def _make_sync(self) -> StampSynchronizer[Any]:
        return StampSynchronizer(
            self.cameras, tolerance=float(self.p("sync_tolerance_s")),
            missing_timeout=float(self.p("missing_timeout_s")),
            allow_partial=bool(self.p("allow_partial")), time_jump=float(self.p("time_jump_s")))

    def _load_detector(self) -> BatchedDetector:
        """Load the weights and check the class filter; raises with a clear message."""
        t0 = time.perf_counter()
        det = BatchedDetector(self._detector_config(None))
        try:
            det.update(classes=parse_classes(self.p("classes"), det.names))
        except ValueError as exc:
            raise DetectorLoadError(f"parameter 'classes': {exc}") from exc
        self.get_logger().info(
            f"loaded {det.path} ({det.backend}, {len(det.names)} classes) in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        return det

    # -- lifecycle --------------------------------------------------------------------------
    def on_configure_impl(self) -> None:
        rig_file = str(self.p("rig_file"))
        self.rig = None
        if rig_file:
            try:
                self.rig = load_rig_yaml(rig_file).subset(self.cameras)
            except CalibrationError as exc:
                raise RuntimeError(f"cannot use rig_file: {exc}") from exc
        self.detector = self._load_detector()  # clear error here when weights are bad
        self.pipeline = DetectionPipeline(self.detector, self.cameras,
                                          float(self.p("conf_threshold")),
                                          bool(self.p("tracking")), self._tracker_config())
        prefix = str(self.p("output_prefix")).rstrip("/")
        for cam in self.cameras:
            fid = frame_id_for(cam)
            self._pubs[cam] = self.create_publisher(Detection2DArray, f"{prefix}/{fid}", 10)
            # reliable keep-last 2: matches reliable (RViz) and best-effort subscribers
            self._img_pubs[cam] = self.create_publisher(Image, f"{prefix}/{fid}/image",
                                                        sensor_qos(depth=2, reliable=True))
        self._marker_pub = self.create_publisher(MarkerArray, f"{prefix}/markers", 10)
        self._timing_pub = self.create_publisher(PipelineTiming, f"{prefix}/timing", 10)
        self.diag.set("backend", self.detector.backend)
        self.diag.set("weights", str(self.detector.path))
        self.diag.set("cameras", ",".join(self.cameras))

    def on_activate_impl(self) -> None:
        with self._lock:
            self.sync = self._make_sync()
        self.input = CameraSetInput(
            self, [(c, frame_id_for(c)) for c in self.cameras],
            str(self.p("image_topic_template")),
            str(self.p("camera_info_topic_template")) if self.rig is None else None,
            self.p("input_type") == "compressed",
            sensor_qos(depth=int(self.p("qos_depth")), reliable=bool(self.p("qos_reliable"))),
            on_image=self._on_image, on_info=self._on_info, work=self._process,
            worker_name="detector_worker")
        self.input.start()

    def on_deactivate_impl(self) -> None:
        if self.input is not None:
            self.input.stop(timeout_s=10.0)
            self.input = None

    def on_cleanup_impl(self) -> None:
        for pub in (*self._pubs.values(), *self._img_pubs.values(), self._marker_pub,
                    self._timing_pub):
            if pub is not None:
                self.destroy_publisher(pub)
        self._pubs, self._img_pubs = {}, {}
        self._marker_pub = self._timing_pub = None
        self.detector = None  # frees the model (and GPU memory with it)
        self.pipeline = None
        self.sync = None

    # -- parameters -------------------------------------------------------------------------
    def _check_live_params(self, params: list) -> SetParametersResult:
        """Checks that need the loaded model: class names are known; CUDA is there."""
        for prm in params:
            try:
                if prm.name == "classes" and self.detector is not None:
                    parse_classes(prm.value, self.detector.names)
                if prm.name == "device" and (err := device_error(prm.value, True)):
                    raise ValueError(err)
            except (DetectorLoadError, ValueError) as exc:
                return SetParametersResult(successful=False, reason=f"{prm.name}: {exc}")
        return SetParametersResult(successful=True)

    def on_params_applied(self, changed: dict[str, Any]) -> None:
        det, pipe = self.detector, self.pipeline
        if det is not None and changed.keys() & _DETECTOR_PARAMS:
            det.update(**{k: v for k, v in vars(self._detector_config(det.names)).items()
                          if k not in ("weights", "allow_pickle")})
        if pipe is not None and changed.keys() & (_TRACKER_PARAMS | {"tracking",
                                                                     "conf_threshold"}):
            pipe.configure(float(self.p("conf_threshold")), bool(self.p("tracking")),
                           self._tracker_config())
        if changed.keys() & _SYNC_PARAMS:
            with self._lock:
                self.sync = self._make_sync()

    # -- input ------------------------------------------------------------------------------
    def _on_info(self, cam: str, msg: CameraInfo) -> None:
        k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
            self.diag.error("bad_camera_info", f"{cam}: camera_info has no valid intrinsics")
            return
        self._camera_k[cam] = (k, int(msg.width), int(msg.height))

    def _on_image(self, cam: str, msg: Any) -> SyncedSet[Any] | None:
        """Offer one image to the synchroniser (clocked by stamps; see lss_bev_ros.sync)."""
        self.diag.count("images_received")
        with self._lock:
            sync = self.sync
            if sync is None:
                return None
            out = sync.add_stamped(cam, stamp_to_sec(msg.header.stamp), msg)
            events = sync.pop_events()
            missing = sync.missing_sources()
        for ev in events:
            self.diag.error(ev.kind, ev.message)
            if ev.kind == "time_jump" and self.pipeline is not None:
                self.pipeline.reset()  # bag looped: tracks of the old timeline are void
        self.diag.set("missing_cameras", ",".join(missing))
        return out

    # -- worker -----------------------------------------------------------------------------
    def _decode(self, name: str, msg: Any) -> np.ndarray:
        w, h = int(self.p("expected_width")), int(self.p("expected_height"))
        if isinstance(msg, CompressedImage):
            rgb = compressed_to_rgb(msg)
        else:
            rgb = image_to_rgb(msg)
        if (w and rgb.shape[1] != w) or (h and rgb.shape[0] != h):
            raise ImageConversionError(
                f"image is {rgb.shape[1]}x{rgb.shape[0]}, expected "
                f"{w or rgb.shape[1]}x{h or rgb.shape[0]}"
            )
        return rgb

    def _process(self, synced: SyncedSet[Any], t_in: float) -> None:
        """One synchronised set (completed at monotonic ``t_in``, s): detect, track, publish."""
        self._set_counter += 1
        k = int(self.p("inference_every"))
        if k > 1 and (self._set_counter - 1) % k:
            self.diag.count("frames_skipped")
            return
        det, pipe, inp = self.detector, self.pipeline, self.input
        if det is None or pipe is None or inp is None:
            return
        t0 = time.perf_counter()
        frames: list[_Frame] = []
        for name in self.cameras:
            msg = synced.items.get(name)
            if msg is None:
                continue
            try:
                frames.append(_Frame(name, msg, self._decode(name, msg)))
            except ConversionError as exc:
                self.diag.error("bad_image", f"{name}: {exc}")
        if not frames:
            return
        decode_ms = (time.perf_counter() - t0) * 1e3
        res = pipe.run([(f.name, f.rgb) for f in frames])
        if inp.stopping:
            return
        t3 = time.perf_counter()
        self._publish(frames, res.published, det.names)
        t4 = time.perf_counter()
        self.frames_processed += 1
        stages = {
            "preprocess": decode_ms + res.stage_ms["preprocess"],
            "inference": res.stage_ms["inference"],
            "tracking": res.stage_ms["tracking"],
            "publish": (t4 - t3) * 1e3,
        }
        ref = max(frames, key=lambda f: stamp_to_sec(f.msg.header.stamp))
        latency_ms = self.stamp_latency_ms(synced.stamp)
        if self._timing_pub is not None and not inp.stopping:
            self._timing_pub.publish(self.timing_msg(
                ref.msg.header.stamp, stages, (t4 - t0) * 1e3, latency_ms, det.backend,
                frame_id=frame_id_for(ref.name), processed=self.frames_processed,
                dropped=inp.slot.dropped, node_latency_ms=(time.monotonic() - t_in) * 1e3,
            ))
        self.diag.count("frames_processed")
        self.diag.set("batch_size", len(frames))
        self.diag.set("detections", sum(len(d) for d in res.published))
        self.diag.set("total_ms", f"{(t4 - t0) * 1e3:.1f}")
        self.diag.set("active_tracks", pipe.active_tracks([f.name for f in frames]))

    # -- output -----------------------------------------------------------------------------
    def _publish(self, frames: list[_Frame], dets: list[Detections], names: dict) -> None:
        markers = MarkerArray()
        if self.p("publish_markers"):
            clear = Marker()
            clear.action = Marker.DELETEALL
            clear.header.stamp = frames[0].msg.header.stamp
            clear.header.frame_id = (self.rig.base_frame_id if self.rig is not None
                                     else frame_id_for(frames[0].name))
            markers.markers.append(clear)
        for f, d in zip(frames, dets, strict=True):
            pub = self._pubs.get(f.name)
            if pub is not None:
                pub.publish(self._array_msg(f, d, names))
            if self.p("publish_annotated"):
                img = annotate(f.rgb, d, names, float(self.p("annotated_scale")))
                self._img_pubs[f.name].publish(self._image_msg(f, img))
            if self.p("publish_markers") and len(d):
                markers.markers.extend(self._markers(f, d, names))
        if self.p("publish_markers") and self._marker_pub is not None:
            self._marker_pub.publish(markers)

    @staticmethod
    def _array_msg(f: _Frame, d: Detections, names: dict) -> Detection2DArray:
        return detections_msg(f.msg.header.stamp, f.name, d, names)

    @staticmethod
    def _image_msg(f: _Frame, rgb: np.ndarray) -> Image:
        return image_msg(f.msg.header.stamp, frame_id_for(f.name), rgb)

    def _intrinsics(self, f: _Frame) -> tuple[np.ndarray, str, np.ndarray | None,
                                              np.ndarray | None] | None:
        """(K scaled to this image, frame, rotation, translation) for the rays, or None."""
        h, w = f.rgb.shape[:2]
        if self.rig is not None:
            cam = self.rig.camera(f.name)
            k, cw, ch = cam.intrinsics, cam.width, cam.height
            frame, rot, trans = self.rig.base_frame_id, cam.rotation, cam.translation
        elif f.name in self._camera_k:
            k, cw, ch = self._camera_k[f.name]
            frame, rot, trans = frame_id_for(f.name), None, None
        else:
            return None
        k = np.array(k, dtype=np.float64)
        if cw and ch and (cw, ch) != (w, h):  # image resized relative to the calibration
            k[0] *= w / cw
            k[1] *= h / ch
        return k, frame, rot, trans

    def _markers(self, f: _Frame, d: Detections, names: dict) -> list[Marker]:
        geo = self._intrinsics(f)
        if geo is None:
            self.diag.count("markers_no_intrinsics")
            return []
        k, frame, rot, trans = geo
        start, ends = bearing_rays(d, k, float(self.p("marker_ray_length_m")), rot, trans)
        lifetime = float(self.p("marker_lifetime_s"))
        ns = frame_id_for(f.name)

        def base(mtype: int, mid: int, sub: str) -> Marker:
            m = Marker()
            m.header.stamp = f.msg.header.stamp
            m.header.frame_id = frame
            m.ns, m.id, m.type, m.action = f"{ns}/{sub}", mid, mtype, Marker.ADD
            m.pose.orientation.w = 1.0
            m.lifetime.sec = int(lifetime)
            m.lifetime.nanosec = int((lifetime % 1.0) * 1e9)
            return m

        from geometry_msgs.msg import Point
        from std_msgs.msg import ColorRGBA

        rays = base(Marker.LINE_LIST, 0, "rays")
        rays.scale.x = 0.05
        rays.color.a = 1.0
        out = [rays]
        for i in range(len(d)):
            r, g, b = (c / 255.0 for c in color_for(int(d.track_id[i]), int(d.cls[i])))
            col = ColorRGBA(r=r, g=g, b=b, a=1.0)
            rays.points += [Point(x=float(start[0]), y=float(start[1]), z=float(start[2])),
                            Point(x=float(ends[i, 0]), y=float(ends[i, 1]),
                                  z=float(ends[i, 2]))]
            rays.colors += [col, col]
            text = base(Marker.TEXT_VIEW_FACING, i, "labels")
            text.pose.position = Point(x=float(ends[i, 0]), y=float(ends[i, 1]),
                                       z=float(ends[i, 2]))
            text.scale.z = 0.8
            text.color = col
            text.text = label_text(d, i, names)
            out.append(text)
        return out


def main(args: list[str] | None = None) -> int:
    """``ros2 run lss_bev_ros detector_node``."""
    return run_node(DetectorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
