"""Shared rosbag2 plumbing (ROS-free): typestore, topic names, QoS, opening bags with clear errors.

Bags are written with the ``rosbags`` typestore of ROS 2 Humble (the message definitions we use
are identical in Humble ... Kilted), as rosbag2 directories (``metadata.yaml`` + one storage
file, MCAP by default).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from rosbags.interfaces import (
    Connection,
    ConnectionExtRosbag2,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
"""Message definitions written into bags (Humble; CDR-identical to later distros)."""

BASE_FRAME = "base_link"
MAP_FRAME = "map"
LIDAR_CHANNEL = "LIDAR_TOP"

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
ODOM_TOPIC = "/odom"
GT_BOXES_TOPIC = "/gt/boxes"
LIDAR_TOPIC = "/lidar_top/points"
CLOCK_TOPIC = "/clock"

RIG_CUSTOM_KEY = "lss_bev_ros.rig_yaml"
"""metadata.yaml ``custom_data`` key holding the rig calibration YAML (bag is self-contained)."""


class BagToolError(RuntimeError):
    """A user-facing error of the bag tools (bad path, corrupt bag, unknown scene, ...)."""


def camera_topics(channel: str) -> tuple[str, str]:
    """nuScenes channel -> (compressed image topic, camera_info topic)."""
    base = f"/cameras/{channel.lower()}"
    return f"{base}/image_raw/compressed", f"{base}/camera_info"


def channel_for_topic(topic: str) -> str | None:
    """Inverse of :func:`camera_topics` for the image topic: ``/cameras/cam_front/...`` -> name."""
    parts = topic.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "cameras" and parts[2] == "image_raw":
        return parts[1].upper()
    return None


def make_qos(latched: bool = False, depth: int = 10) -> Qos:
    """Offered QoS recorded for a topic: reliable keep-last; transient local when ``latched``."""
    zero = QosTime(0, 0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=1 if latched else depth,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
        deadline=zero,
        lifespan=zero,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False,
    )


def is_latched(conn: Connection) -> bool:
    """True when the recorded publisher offered transient-local durability (e.g. /tf_static)."""
    ext = conn.ext
    if isinstance(ext, ConnectionExtRosbag2):
        return any(q.durability == QosDurability.TRANSIENT_LOCAL for q in ext.offered_qos_profiles)
    return conn.topic == TF_STATIC_TOPIC


def rig_path_for_bag(bag: str | Path) -> Path:
    """Rig calibration file written beside a bag by ``convert``: ``<bag>.rig.yaml``."""
    p = Path(bag)
    if p.is_file():  # a storage file inside the bag directory
        p = p.parent
    return p.parent / f"{p.name}.rig.yaml"


@contextlib.contextmanager
def open_bag(path: str | Path) -> Iterator[Reader]:
    """Open a rosbag2 directory (or a bare .mcap/.db3 file) for reading; clear errors."""
    p = Path(path)
    if not p.exists():
        raise BagToolError(f"bag not found: {p}")
    if p.is_dir() and not (p / "metadata.yaml").is_file():
        raise BagToolError(
            f"{p} is not a rosbag2 directory (no metadata.yaml); pass the bag directory, or a "
            ".mcap/.db3 file directly"
        )
    try:
        reader = Reader(p)
        reader.open()
    except Exception as exc:
        raise BagToolError(
            f"cannot open bag {p}: {exc} (truncated or corrupt? `lss-bev-bag info {p}` lists "
            "what is readable)"
        ) from exc
    try:
        yield reader
    finally:
        with contextlib.suppress(Exception):
            reader.close()


def bag_custom_data(reader: Reader) -> dict[str, str]:
    """``custom_data`` of an open bag's metadata.yaml ({} for bare storage files)."""
    meta = getattr(reader.storage, "metadata", None)
    custom = getattr(meta, "custom", None)
    return dict(custom) if isinstance(custom, dict) else {}


def iter_raw(
    reader: Reader, topics: list[str] | None = None
) -> Iterator[tuple[Connection, int, bytes]]:
    """(connection, receive time ns, CDR bytes) in receive-time order, optionally filtered.

    A storage error mid-way (truncated/corrupt file) becomes a :class:`BagToolError` that says
    how far reading got.
    """
    conns = [c for c in reader.connections if topics is None or c.topic in topics]
    if topics is not None:
        known = {c.topic for c in reader.connections}
        missing = [t for t in topics if t not in known]
        if missing:
            raise BagToolError(f"topics not in bag: {missing} (bag has {sorted(known)})")
    n = 0
    last = None
    try:
        for conn, t, raw in reader.messages(connections=conns):
            n += 1
            last = t
            yield conn, t, raw
    except BagToolError:
        raise
    except Exception as exc:
        raise BagToolError(
            f"bag read failed after {n} messages (last receive time {last} ns): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
