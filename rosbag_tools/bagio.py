"""Shared rosbag2 plumbing (ROS-free): typestore, topic names, QoS, opening bags with clear errors.

Bags are written with the ``rosbags`` typestore of ROS 2 Humble (the message definitions we use
are identical in Humble ... Kilted), as rosbag2 directories (``metadata.yaml`` + one storage
file, MCAP by default). ``rosbags`` writes MCAP chunks without CRCs, so :func:`add_mcap_crcs`
re-encodes the file with the ``mcap`` writer (chunk, data-section and summary CRCs);
:func:`verify_mcap_checksums` checks them and :func:`open_bag` refuses a bag that fails.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
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


def add_mcap_crcs(mcap_file: str | Path) -> None:
    """Re-encode an MCAP file with chunk, data-section and summary CRC32s (``mcap`` writer),
    keeping header, schemas, channels (QoS metadata), messages, metadata records and
    attachments; the file is replaced atomically."""
    from mcap.records import Attachment, Channel, Chunk, Header, Message, Metadata, Schema
    from mcap.stream_reader import StreamReader, breakup_chunk
    from mcap.writer import CompressionType, Writer

    src = Path(mcap_file)
    tmp = src.with_name(f".{src.name}.crc-tmp")
    schema_ids: dict[int, int] = {}
    channel_ids: dict[int, int] = {}
    try:
        with src.open("rb") as fin, tmp.open("wb") as fout:
            records = StreamReader(fin, emit_chunks=True).records
            head = next(records)
            if not isinstance(head, Header):
                raise BagToolError(f"{src}: MCAP does not start with a header record")
            writer = Writer(fout, compression=CompressionType.NONE, enable_crcs=True,
                            enable_data_crcs=True)
            writer.start(profile=head.profile, library=head.library)

            def put(rec: object) -> None:
                if isinstance(rec, Schema) and rec.id not in schema_ids:
                    schema_ids[rec.id] = writer.register_schema(rec.name, rec.encoding, rec.data)
                elif isinstance(rec, Channel) and rec.id not in channel_ids:
                    channel_ids[rec.id] = writer.register_channel(
                        rec.topic, rec.message_encoding, schema_ids.get(rec.schema_id, 0),
                        dict(rec.metadata))
                elif isinstance(rec, Message):
                    writer.add_message(channel_ids[rec.channel_id], rec.log_time, rec.data,
                                       rec.publish_time, rec.sequence)

            for rec in records:
                if isinstance(rec, Chunk):
                    for inner in breakup_chunk(rec):
                        put(inner)
                elif isinstance(rec, Metadata):
                    writer.add_metadata(rec.name, dict(rec.metadata))
                elif isinstance(rec, Attachment):
                    writer.add_attachment(rec.create_time, rec.log_time, rec.name,
                                          rec.media_type, rec.data)
                else:
                    put(rec)
            writer.finish()
        os.replace(tmp, src)
    except BagToolError:
        raise
    except Exception as exc:
        raise BagToolError(f"cannot add CRCs to {src}: {type(exc).__name__}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class ChecksumReport:
    """Result of :func:`verify_mcap_checksums` for one MCAP file."""

    path: Path
    chunks: int = 0
    chunks_with_crc: int = 0
    data_crc: bool = False  # DataEnd carries a data-section CRC
    summary_crc: bool = False  # Footer carries a summary CRC
    errors: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``failed`` (a CRC mismatch or unreadable record), ``verified`` (every chunk and the
        data section carry CRCs that match) or ``none`` (written without CRCs: a flipped byte
        cannot be detected)."""
        if self.errors:
            return "failed"
        if self.data_crc or (self.chunks and self.chunks_with_crc == self.chunks):
            return "verified"
        return "none"


def verify_mcap_checksums(mcap_file: str | Path) -> ChecksumReport:
    """Read a whole MCAP file and check every CRC it carries (chunks, data section, summary).
    Never raises for corrupt data: mismatches are listed in ``errors``."""
    from mcap.records import Chunk, DataEnd, Footer
    from mcap.stream_reader import StreamReader, breakup_chunk

    f = Path(mcap_file)
    rep = ChecksumReport(f)
    try:
        with f.open("rb") as fh:
            footer = None
            for rec in StreamReader(fh, validate_crcs=True, emit_chunks=True).records:
                if isinstance(rec, Chunk):
                    rep.chunks += 1
                    if rec.uncompressed_crc:
                        rep.chunks_with_crc += 1
                    try:
                        breakup_chunk(rec, validate_crc=True)
                    except Exception as exc:
                        rep.errors.append(
                            f"{f.name}: chunk {rep.chunks} (messages "
                            f"{rec.message_start_time}..{rec.message_end_time} ns) is corrupt: "
                            f"{type(exc).__name__}: {exc}")
                elif isinstance(rec, DataEnd):
                    rep.data_crc = rec.data_section_crc != 0
                elif isinstance(rec, Footer):
                    footer = rec
            if footer is not None and footer.summary_crc and footer.summary_start:
                rep.summary_crc = True
                size = f.stat().st_size
                fh.seek(footer.summary_start)
                crc = 0
                left = size - 8 - 4 - footer.summary_start  # up to the footer's summary_crc
                while left > 0:
                    block = fh.read(min(left, 1 << 20))
                    if not block:
                        break
                    crc = zlib.crc32(block, crc)
                    left -= len(block)
                if crc != footer.summary_crc:
                    rep.errors.append(f"{f.name}: summary section CRC mismatch (index or "
                                      f"statistics corrupt): {crc:#010x} != "
                                      f"{footer.summary_crc:#010x}")
    except Exception as exc:
        rep.errors.append(f"{f.name}: {type(exc).__name__}: {exc}")
    return rep


def mcap_files(p: Path) -> list[Path]:
    """The MCAP storage files of a bag directory (or the file itself)."""
    if p.is_file():
        return [p] if p.suffix == ".mcap" else []
    return sorted(p.glob("*.mcap"))


@contextlib.contextmanager
def open_bag(path: str | Path, verify: bool = True) -> Iterator[Reader]:
    """Open a rosbag2 directory (or a bare .mcap/.db3 file) for reading; clear errors.

    ``verify``: first check the CRCs of every MCAP storage file (one read of the file);
    a mismatch (a flipped byte) raises :class:`BagToolError`. Files written without CRCs pass.
    """
    p = Path(path)
    if not p.exists():
        raise BagToolError(f"bag not found: {p}")
    if p.is_dir() and not (p / "metadata.yaml").is_file():
        raise BagToolError(
            f"{p} is not a rosbag2 directory (no metadata.yaml); pass the bag directory, or a "
            ".mcap/.db3 file directly"
        )
    if verify:
        for f in mcap_files(p):
            rep = verify_mcap_checksums(f)
            if rep.status == "failed" and rep.chunks_with_crc + rep.data_crc > 0:
                raise BagToolError(
                    f"bag {p} is truncated or corrupt (checksum verification): {rep.errors[0]} "
                    f"(`lss-bev-bag info {p}` lists what is readable)")
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
