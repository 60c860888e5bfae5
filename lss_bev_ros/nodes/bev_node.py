"""bev_node: multi-camera Lift-Splat-Shoot BEV segmentation -> nav_msgs/OccupancyGrid.

Glue only: messages go into :class:`lss_bev_ros.bev_pipeline.BevPipeline` (the same core that
``lss-bev-bag eval`` feeds from a bag), and what it returns is published.

* Subscribes to N camera image topics (``sensor_msgs/Image`` or ``CompressedImage``) and their
  ``CameraInfo`` (:class:`~lss_bev_ros.nodes.camera_input.CameraSetInput`), and ``/tf_static``
  for camera extrinsics (``base_link -> ... -> camera frame``; the rig file otherwise).
* Camera sets, late / offset / missing cameras, time jumps and the missing-camera policy are
  the pipeline's (see :mod:`lss_bev_ros.sync`); every judgement is in ``/diagnostics``.
* Latest-wins: sets go through a one-slot hand-off to one worker thread.
* Publishes the grid (stamp = input stamp), a coloured BEV image and ``PipelineTiming``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nav_msgs.msg import OccupancyGrid
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image

from lss_bev_ros.backends import BACKEND_NAMES, parse_backend_options
from lss_bev_ros.bev_pipeline import (
    MODEL_CONFIGS,
    POLICIES,
    PRECISION_CHOICES,
    BevFrame,
    BevPipeline,
    BevPipelineOptions,
    create_bev_backend,
    load_bev_model,
)
from lss_bev_ros.calibration import (
    NUSCENES_CAMERAS,
    CalibrationError,
    RigCalibration,
    frame_id_for,
    load_rig_yaml,
)
from lss_bev_ros.conversions.grid_msg import fill_occupancy_grid, fill_rgb8_image
from lss_bev_ros.eval.metrics import LatencyStats
from lss_bev_ros.msg import PipelineTiming
from lss_bev_ros.nodes.camera_input import CameraSetInput
from lss_bev_ros.nodes.common import (
    ParamSpec,
    PerceptionNode,
    camera_template_error,
    cameras_error,
    device_error,
    latched_qos,
    parses_with,
    run_node,
    sensor_qos,
    topic_error,
)
from lss_bev_ros.nodes.eval_node import wait_for_file
from lss_bev_ros.sync import SyncedSet
from lss_bev_ros.visualization import colorize_bev

try:  # /tf_static extrinsics: tf2_msgs has no PyPI wheel (tools/bootstrap.sh builds it)
    from tf2_msgs.msg import TFMessage  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the ROS install
    TFMessage = None

_LIVE = {"threshold", "sync_tolerance_s", "missing_timeout_s", "time_jump_s",
         "missing_camera_policy"}


class BevNode(PerceptionNode):
    """Lifecycle node: cameras -> BEV OccupancyGrid + coloured image + timing."""

    PARAMS: tuple[ParamSpec, ...] = (
        ParamSpec("cameras", list(NUSCENES_CAMERAS), "camera names (rig order = model order)",
                  read_only=True, validator=cameras_error),
        ParamSpec("input_type", "compressed", "subscribe to Image (raw) or "
                  "CompressedImage (compressed)", read_only=True, choices=("raw", "compressed")),
        ParamSpec("image_topic_template", "/cameras/{camera}/image_raw", "image topic per "
                  "camera; {camera} = frame id; '/compressed' appended for compressed input",
                  read_only=True, validator=camera_template_error),
        ParamSpec("camera_info_topic_template", "/cameras/{camera}/camera_info",
                  "CameraInfo topic per camera", read_only=True,
                  validator=camera_template_error),
        ParamSpec("rig_file", "", "rig calibration YAML (sensor -> base_link extrinsics, "
                  "written by lss-bev-bag convert / frame_player_node)", read_only=True),
        ParamSpec("rig_wait_s", 10.0, "on configure, wait this long for rig_file to appear "
                  "(launch starts the player that writes it in parallel)", read_only=True,
                  min=0.0, max=600.0),
        ParamSpec("use_tf_static", True, "take camera extrinsics from /tf_static where "
                  "published (overrides the rig file per camera)", read_only=True),
        ParamSpec("weights", "", "LSS checkpoint (.pt, loaded with weights_only=True); empty: "
                  "untrained model of 'model_config' (for plumbing tests only)",
                  unconfigured_only=True),
        ParamSpec("model_config", "small", "config of the untrained model when weights is empty",
                  read_only=True, choices=tuple(MODEL_CONFIGS)),
        ParamSpec("seed", 0, "random init seed of the untrained model", read_only=True),
        ParamSpec("backend", "torch", "inference backend", read_only=True,
                  choices=BACKEND_NAMES),
        ParamSpec("device", "cpu", "torch device: cpu, cuda, cuda:N", read_only=True,
                  validator=device_error),
        ParamSpec("precision", "auto", "inference precision; auto: bf16 only on CPUs with "
                  "native bf16 (amx/avx512_bf16), fp16 on CUDA, each after a parity check "
                  "against fp32, else fp32", read_only=True, choices=PRECISION_CHOICES),
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
        ParamSpec("missing_timeout_s", 1.0, "how long (s of stamps) a set waits for a late "
                  "camera, and how long a silent camera takes to count as missing",
                  min=0.05, max=60.0),
        ParamSpec("time_jump_s", 5.0, "stamps of most cameras this much older than their "
                  "newest (bag looped or restarted) restart synchronisation (s)", min=0.1,
                  max=86400.0),
        ParamSpec("missing_camera_policy", "mask", "mask: run on the other cameras (missing "
                  "camera's features excluded); wait: publish nothing until it is back",
                  choices=POLICIES),
        ParamSpec("max_image_side_px", 8192, "CameraInfo / image width and height limit "
                  "(pixels); larger ones are rejected", read_only=True, min=16, max=65536),
        ParamSpec("output_frame", "base_link", "frame of the grid", read_only=True),
        ParamSpec("occupancy_topic", "/bev/occupancy", "OccupancyGrid output", read_only=True,
                  validator=topic_error),
        ParamSpec("bev_image_topic", "/bev/image", "coloured BEV image output", read_only=True,
                  validator=topic_error),
        ParamSpec("timing_topic", "/bev/timing", "PipelineTiming output", read_only=True,
                  validator=topic_error),
        ParamSpec("publish_image", True, "publish the coloured BEV image"),
        ParamSpec("image_scale", 2, "BEV image up-scaling (pixels per cell)", min=1, max=8),
        ParamSpec("decode_reduction", 0, "compressed input: decode JPEGs at 1/k size (libjpeg "
                  "DCT scaling, intrinsics scaled to match); 0: auto = the largest k that keeps "
                  "twice the model's resize target; 1: full size", read_only=True,
                  choices=(0, 1, 2, 4, 8)),
        ParamSpec("warmup", True, "run one dummy frame on activate", read_only=True),
        ParamSpec("qos_reliable", False, "reliable (instead of best-effort) camera "
                  "subscriptions: set true for raw images over DDS (large messages are "
                  "fragmented; best-effort loses whole images, see README 'Transport')",
                  read_only=True),
        ParamSpec("qos_depth", 2, "camera subscription queue depth", read_only=True, min=1,
                  max=100),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("bev_node", self.PARAMS, **kwargs)
        self.rig: RigCalibration | None = None
        self.pipeline: BevPipeline | None = None
        self.input: CameraSetInput | None = None
        self._pubs: dict[str, Any] = {}
        self._tf_sub: Any = None
        self._timer: Any = None
        self._no_input = False
        self.latency = LatencyStats(500)  # input stamp -> publish, node clock (ms)
        self.node_latency = LatencyStats(500)  # set complete -> publish, monotonic (ms)
        self.frames_processed = 0

    # -- lifecycle --------------------------------------------------------------------------
    def on_configure_impl(self) -> None:
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
            self.rig = load_rig_yaml(rig_file).subset(list(self.p("cameras")))
        except CalibrationError as exc:
            raise RuntimeError(f"rig calibration: {exc}") from exc
        self.diag.set("extrinsics_source", f"rig_file {rig_file}")
        reliable = QoSProfile(depth=5)
        self._pubs = {
            "grid": self.create_publisher(OccupancyGrid, self.p("occupancy_topic"), reliable),
            "image": self.create_publisher(Image, self.p("bev_image_topic"), reliable),
            "timing": self.create_publisher(PipelineTiming, self.p("timing_topic"), reliable),
        }
        self.diag.set("cameras", ",".join(self.rig.names))

    def on_activate_impl(self) -> None:
        try:
            self._activate()
        except BaseException:
            self.on_deactivate_impl()  # no half-active state: stop what was started
            raise

    def _pipeline_options(self) -> BevPipelineOptions:
        return BevPipelineOptions(
            compressed=self.p("input_type") == "compressed",
            decode_reduction=int(self.p("decode_reduction")),
            threshold=float(self.p("threshold")),
            sync_tolerance_s=float(self.p("sync_tolerance_s")),
            missing_timeout_s=float(self.p("missing_timeout_s")),
            time_jump_s=float(self.p("time_jump_s")),
            missing_camera_policy=str(self.p("missing_camera_policy")),
            max_image_side_px=int(self.p("max_image_side_px")),
            output_frame=str(self.p("output_frame")))

    def _activate(self) -> None:
        import torch

        if self.rig is None:
            raise RuntimeError("not configured")
        if int(self.p("torch_threads")) > 0:
            torch.set_num_threads(int(self.p("torch_threads")))
        model, cfg, what = load_bev_model(self.p("weights"), self.p("model_config"),
                                          int(self.p("seed")))
        if not self.p("weights"):
            self.get_logger().warning(
                "weights is empty: running an UNTRAINED LSS model (random init) - output is "
                "meaningless; set 'weights' to a trained checkpoint")
        self.diag.set("model", what)
        cache = self.p("cache_dir") or None
        backend = create_bev_backend(
            self.p("backend"), model, cfg, self.rig, self.p("device"), self.p("precision"),
            Path(cache) if cache else None, parse_backend_options(self.p("backend_options")),
            self.diag)
        self.get_logger().info(f"precision: {self.diag.values.get('precision')}")
        self.diag.set("backend", backend.name)
        self.pipeline = pipe = BevPipeline(backend, cfg, self.rig, self._pipeline_options(),
                                           self.diag)
        if self.p("warmup"):
            self.get_logger().info(f"warm-up frame took {pipe.warmup():.0f} ms")
        if self.p("use_tf_static"):
            if TFMessage is None:
                self.get_logger().info("tf2_msgs not importable: extrinsics from rig_file only")
            else:
                self._tf_sub = self.create_subscription(TFMessage, "/tf_static",
                                                        self._on_tf_static, latched_qos(100))
        cams = [(c.name, c.frame_id or frame_id_for(c.name)) for c in self.rig.cameras]
        self.input = CameraSetInput(
            self, cams, self.p("image_topic_template"), self.p("camera_info_topic_template"),
            self.p("input_type") == "compressed",
            sensor_qos(depth=int(self.p("qos_depth")), reliable=bool(self.p("qos_reliable"))),
            on_image=pipe.add_image, on_info=self._on_info, work=self._process,
            worker_name="bev_worker")
        self.input.start()
        self._timer = self.create_timer(1.0, self._monitor, callback_group=self.input.group)
        self.get_logger().info(
            f"active: {len(cams)} cameras ({self.p('input_type')}), backend {backend.name}, "
            f"policy {self.p('missing_camera_policy')}")

    def on_deactivate_impl(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self.input is not None:
            self.input.stop()
            self.input = None
        if self._tf_sub is not None:
            self.destroy_subscription(self._tf_sub)
            self._tf_sub = None
        self.pipeline = None  # frees the model and backend
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

    def on_params_applied(self, changed: dict[str, Any]) -> None:
        live = {k: v for k, v in changed.items() if k in _LIVE}
        if live and self.pipeline is not None:
            self.pipeline.update_options(**live)

    # -- input ------------------------------------------------------------------------------
    def _on_info(self, name: str, msg: CameraInfo) -> None:
        if self.pipeline is not None:
            self.pipeline.add_camera_info(name, list(msg.k), int(msg.width), int(msg.height))

    def _on_tf_static(self, msg: Any) -> None:
        """Edges of the static tree (latched topic: every publisher's full set on connect)."""
        pipe = self.pipeline
        if pipe is None:
            return
        for tr in msg.transforms:
            q, t = tr.transform.rotation, tr.transform.translation
            if pipe.add_static_transform(tr.header.frame_id, tr.child_frame_id,
                                         [q.w, q.x, q.y, q.z], [t.x, t.y, t.z]):
                self.get_logger().info(f"extrinsics from /tf_static ({tr.header.frame_id} -> "
                                       f"{tr.child_frame_id}) applied")

    def _monitor(self) -> None:
        """1 Hz: wall-time 'no input' (a paused source is not 'cameras missing')."""
        inp = self.input
        silent = inp.silent_s() if inp is not None else None
        no_input = silent is not None and silent > float(self.p("missing_timeout_s"))
        if no_input and not self._no_input:
            self.get_logger().info(f"no camera input for {silent:.1f} s")
        self._no_input = no_input
        self.diag.set("no_input", no_input)

    # -- worker -----------------------------------------------------------------------------
    def _process(self, s: SyncedSet[Any], t_in: float) -> None:
        """One camera set (completed at monotonic ``t_in``, s) -> grid, image, timing."""
        pipe, inp = self.pipeline, self.input
        if pipe is None or inp is None:
            return
        frame = pipe.process(s)
        if frame is None or inp.stopping:
            return
        t0 = time.perf_counter()
        self._publish(frame)
        stages = frame.stage_ms
        stages["publish"] = (time.perf_counter() - t0) * 1e3
        latency_ms = self.stamp_latency_ms(frame.stamp)
        node_latency_ms = (time.monotonic() - t_in) * 1e3
        self.frames_processed += 1
        self.latency.add(latency_ms)
        self.node_latency.add(node_latency_ms)
        if inp.stopping:
            return
        self._pubs["timing"].publish(self.timing_msg(
            frame.header_stamp, stages, frame.total_ms, latency_ms,
            self.diag.values.get("backend", ""), frame_id=frame.grid.frame_id,
            processed=self.frames_processed, dropped=inp.slot.dropped,
            node_latency_ms=node_latency_ms))
        self.diag.set("latency_p50_ms", f"{self.latency.p50:.1f}")
        self.diag.set("latency_p99_ms", f"{self.latency.p99:.1f}")
        self.diag.set("node_latency_p50_ms", f"{self.node_latency.p50:.1f}")
        self.diag.set("node_latency_p99_ms", f"{self.node_latency.p99:.1f}")
        self.diag.set("total_ms", f"{frame.total_ms:.1f}")
        for k, v in stages.items():
            self.diag.set(f"stage_ms.{k}", f"{v:.1f}")

    def _publish(self, frame: BevFrame) -> None:
        self._pubs["grid"].publish(fill_occupancy_grid(OccupancyGrid(), frame.grid,
                                                       frame.occupancy, frame.header_stamp))
        if self.p("publish_image"):
            g = frame.grid
            rgb = colorize_bev(frame.probability, frame.visible,
                               threshold=float(self.p("threshold")),
                               scale=int(self.p("image_scale")), resolution=g.resolution,
                               grid_origin=(g.xmin, g.ymin))
            self._pubs["image"].publish(fill_rgb8_image(Image(), rgb, frame.header_stamp,
                                                        g.frame_id))


def main(args: list[str] | None = None) -> int:
    """``ros2 run lss_bev_ros bev_node``."""
    return run_node(BevNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
