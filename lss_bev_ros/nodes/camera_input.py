"""The camera-set input of bev_node and detector_node: one threading model for both.

Per camera an image subscription (``Image`` or ``CompressedImage``, topic from a template with
``{camera}`` = the camera's frame id) and optionally a ``CameraInfo`` subscription, all in one
mutually exclusive callback group (callbacks never run concurrently, so the synchroniser sees
images in arrival order). The node's ``on_image`` feeds its ROS-free core and returns a completed
camera set or None; completed sets go through a latest-wins :class:`~lss_bev_ros.sync.LatestSlot`
to ONE worker thread that runs ``work(set, completed_at)``. Subscriptions never wait for
inference; sets superseded before the worker takes them are dropped and counted
(``frames_dropped``).

Shutdown: :meth:`stop` destroys the subscriptions, wakes and joins the worker; the worker stops
quietly once the node's context is gone (Ctrl-C), so nothing is published after it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from lss_bev_ros.nodes.common import PerceptionNode, camera_topic
from lss_bev_ros.sync import LatestSlot, SyncedSet

OnImage = Callable[[str, Any], "SyncedSet[Any] | None"]
OnInfo = Callable[[str, CameraInfo], None]
Work = Callable[[SyncedSet[Any], float], None]


class CameraSetInput:
    """Subscriptions + latest-wins hand-off + worker thread for one node's cameras.

    Args:
        node: the owning node (its ``diag`` counts drops and worker errors).
        cameras: (camera name, frame id) pairs, in the node's camera order.
        image_template / info_template: topics with ``{camera}``; ``/compressed`` is appended to
            the image topic for compressed input; ``info_template`` None: no CameraInfo.
        compressed: CompressedImage instead of Image.
        qos: QoS of the image subscriptions (sensor QoS, overridable by parameters).
        on_image, on_info: per-message callbacks (the node's glue into its core).
        work: runs in the worker thread for each set taken: ``work(set, t_completed)`` with
            the monotonic time (s) the set completed (node latency is measured from it).
    """

    def __init__(self, node: PerceptionNode, cameras: Sequence[tuple[str, str]],
                 image_template: str, info_template: str | None, compressed: bool,
                 qos: QoSProfile, on_image: OnImage, on_info: OnInfo | None, work: Work,
                 worker_name: str) -> None:
        self._node = node
        self._cameras = tuple(cameras)
        self._image_template = image_template
        self._info_template = info_template
        self._compressed = compressed
        self._qos = qos
        self._on_image = on_image
        self._on_info = on_info
        self._work = work
        self._worker_name = worker_name
        self._subs: list[Any] = []
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self.slot: LatestSlot[tuple[SyncedSet[Any], float]] = LatestSlot()
        self.group = MutuallyExclusiveCallbackGroup()
        self.last_arrival: float | None = None  # monotonic time of the last image (s)

    def topics(self) -> list[str]:
        """The image topics subscribed to."""
        suffix = "/compressed" if self._compressed else ""
        return [camera_topic(self._image_template, fid) + suffix for _, fid in self._cameras]

    def start(self) -> None:
        """Start the worker, then subscribe."""
        self.slot = LatestSlot()
        self._stop.clear()
        self.last_arrival = None
        self._worker = threading.Thread(target=self._run, name=self._worker_name, daemon=True)
        self._worker.start()
        mtype = CompressedImage if self._compressed else Image
        for (name, fid), topic in zip(self._cameras, self.topics(), strict=True):
            self._subs.append(self._node.create_subscription(
                mtype, topic, lambda m, n=name: self._image(n, m), self._qos,
                callback_group=self.group))
            if self._info_template is not None and self._on_info is not None:
                self._subs.append(self._node.create_subscription(
                    CameraInfo, camera_topic(self._info_template, fid),
                    lambda m, n=name: self._info(n, m), self._qos, callback_group=self.group))

    def stop(self, timeout_s: float = 30.0) -> None:
        """Unsubscribe, wake and join the worker (the current set finishes first)."""
        for s in self._subs:
            self._node.destroy_subscription(s)
        self._subs = []
        self._stop.set()
        self.slot.close()
        if self._worker is not None:
            self._worker.join(timeout=timeout_s)
            self._worker = None

    def silent_s(self) -> float | None:
        """Seconds (monotonic) since the last image, None before the first."""
        return None if self.last_arrival is None else time.monotonic() - self.last_arrival

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called or the node's context is gone."""
        return self._stop.is_set() or not self._node.context.ok()

    # ---- callbacks / worker ----------------------------------------------------------------
    def _image(self, name: str, msg: Any) -> None:
        if not self._node.active:
            return
        self.last_arrival = time.monotonic()
        out = self._on_image(name, msg)
        if out is not None and self.slot.put((out, time.monotonic())):
            self._node.diag.count("frames_dropped")

    def _info(self, name: str, msg: CameraInfo) -> None:
        if self._on_info is not None:
            self._on_info(name, msg)

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.slot.take(timeout=0.2)
            if item is None or self.stopping:
                continue
            try:
                self._work(*item)
            except Exception as exc:  # keep the node alive whatever one set does
                if self.stopping:
                    return  # the context went away mid-frame (Ctrl-C): nothing to report
                self._node.diag.error("processing_failed", f"{type(exc).__name__}: {exc}")
