"""``lss-bev-bag info``: topics, types, counts, duration and rates of a rosbag2 bag (ROS-free).

Counts and rates come from scanning the messages (not only metadata.yaml), so a bag that was cut
short reports what is actually readable, plus the error that stopped the scan. When ``rosbags``
cannot open the bag at all (no summary in a truncated MCAP, broken metadata), the storage file
is scanned record by record with the ``mcap`` stream reader (or ``sqlite3`` for .db3). MCAP
checksums (chunk, data-section and summary CRCs) are verified first: a flipped byte makes the
bag incomplete; a bag written without CRCs says so (``Checksums: none``).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rosbag_tools.bagio import (
    TYPESTORE,
    BagToolError,
    bag_custom_data,
    iter_raw,
    mcap_files,
    open_bag,
    verify_mcap_checksums,
)


@dataclass
class TopicSummary:
    """Per-topic statistics; times are bag receive times in ns."""

    topic: str
    msgtype: str
    count: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    metadata_count: int | None = None  # count claimed by metadata.yaml / summary
    undecodable: int = 0  # records whose CDR payload does not deserialise (deep scan)

    def add(self, t_ns: int) -> None:
        self.count += 1
        self.first_ns = t_ns if self.first_ns is None else min(self.first_ns, t_ns)
        self.last_ns = t_ns if self.last_ns is None else max(self.last_ns, t_ns)

    @property
    def rate_hz(self) -> float:
        """Mean rate (count - 1) / span; 0 with fewer than two messages."""
        if self.count < 2 or self.first_ns is None or self.last_ns is None:
            return 0.0
        span = (self.last_ns - self.first_ns) * 1e-9
        return (self.count - 1) / span if span > 0 else 0.0


@dataclass
class BagInfo:
    """What ``info`` found in a bag."""

    path: Path
    storage: str = ""
    topics: dict[str, TopicSummary] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    custom_data: dict[str, str] = field(default_factory=dict)
    checksums: str = "n/a"  # MCAP CRCs: verified | none | failed | n/a (sqlite3)

    @property
    def complete(self) -> bool:
        """True when the bag was read to the end without errors."""
        return not self.errors

    @property
    def message_count(self) -> int:
        return sum(t.count for t in self.topics.values())

    @property
    def start_ns(self) -> int | None:
        firsts = [t.first_ns for t in self.topics.values() if t.first_ns is not None]
        return min(firsts) if firsts else None

    @property
    def end_ns(self) -> int | None:
        lasts = [t.last_ns for t in self.topics.values() if t.last_ns is not None]
        return max(lasts) if lasts else None

    @property
    def duration_s(self) -> float:
        s, e = self.start_ns, self.end_ns
        return 0.0 if s is None or e is None else (e - s) * 1e-9

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "storage": self.storage,
            "complete": self.complete,
            "checksums": self.checksums,
            "errors": list(self.errors),
            "message_count": self.message_count,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "duration_s": self.duration_s,
            "topics": [
                {"topic": t.topic, "type": t.msgtype, "count": t.count,
                 "metadata_count": t.metadata_count, "undecodable": t.undecodable,
                 "rate_hz": round(t.rate_hz, 4),
                 "first_ns": t.first_ns, "last_ns": t.last_ns}
                for t in sorted(self.topics.values(), key=lambda t: t.topic)
            ],
        }


def _storage_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted([*path.glob("*.mcap"), *path.glob("*.db3")])


def _scan_mcap_stream(f: Path, info: BagInfo) -> None:
    """Record-by-record scan of a (possibly truncated) MCAP file."""
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    with f.open("rb") as fh:
        try:
            for rec in StreamReader(fh, skip_magic=False).records:
                if isinstance(rec, Schema):
                    schemas[rec.id] = rec.name
                elif isinstance(rec, Channel):
                    channels[rec.id] = (rec.topic, schemas.get(rec.schema_id, "?"))
                elif isinstance(rec, Message):
                    topic, typ = channels.get(rec.channel_id, (f"<channel {rec.channel_id}>", "?"))
                    ts = info.topics.setdefault(topic, TopicSummary(topic, typ))
                    ts.msgtype = typ
                    ts.add(rec.log_time)
        except Exception as exc:
            info.errors.append(
                f"{f.name}: MCAP stream ends early after {info.message_count} readable messages: "
                f"{type(exc).__name__}: {str(exc) or 'file truncated'}"
            )


def _scan_sqlite(f: Path, info: BagInfo) -> None:
    try:
        con = sqlite3.connect(f"file:{f}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        info.errors.append(f"{f.name}: cannot open sqlite3 storage: {exc}")
        return
    try:
        topics = {r[0]: (r[1], r[2]) for r in con.execute("SELECT id, name, type FROM topics")}
        for tid, ts in con.execute("SELECT topic_id, timestamp FROM messages ORDER BY timestamp"):
            name, typ = topics.get(tid, (f"<topic {tid}>", "?"))
            summary = info.topics.setdefault(name, TopicSummary(name, typ))
            summary.msgtype = typ
            summary.add(int(ts))
    except sqlite3.Error as exc:
        info.errors.append(
            f"{f.name}: sqlite3 read failed after {info.message_count} messages: {exc}"
        )
    finally:
        con.close()


def _metadata_counts(p: Path) -> dict[str, int]:
    """Per-topic counts claimed by metadata.yaml ({} when absent or unreadable)."""
    try:
        meta = yaml.safe_load((p / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return {t["topic_metadata"]["name"]: int(t["message_count"])
                for t in meta["topics_with_message_count"]}
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return {}


def bag_info(path: str | Path, deep: bool = False) -> BagInfo:
    """Scan a bag; never raises for corrupt data (errors are listed in ``BagInfo.errors``),
    only for a path that does not exist. ``deep`` also deserialises every record (CDR check)."""
    p = Path(path)
    if not p.exists():
        raise BagToolError(f"bag not found: {p}")
    info = BagInfo(p)
    reports = [verify_mcap_checksums(f) for f in mcap_files(p)]
    if reports:
        states = {r.status for r in reports}
        info.checksums = ("failed" if "failed" in states and any(
            r.chunks_with_crc or r.data_crc for r in reports) else
            "none" if "none" in states or "failed" in states else "verified")
        if info.checksums == "failed":
            info.errors += [e for r in reports for e in r.errors]
    try:
        with open_bag(p, verify=False) as reader:
            info.custom_data = bag_custom_data(reader)
            files = _storage_files(p)
            info.storage = files[0].suffix.lstrip(".") if files else "?"
            for c in reader.connections:
                ts = info.topics.setdefault(c.topic, TopicSummary(c.topic, c.msgtype))
                ts.metadata_count = (ts.metadata_count or 0) + int(c.msgcount)
            try:
                for conn, t, raw in iter_raw(reader):
                    ts = info.topics[conn.topic]
                    ts.add(t)
                    if deep and conn.msgtype in TYPESTORE.types:
                        try:
                            TYPESTORE.deserialize_cdr(raw, conn.msgtype)
                        except Exception as exc:
                            ts.undecodable += 1
                            if ts.undecodable <= 3:
                                info.errors.append(
                                    f"{conn.topic} @ {t} ns: undecodable {conn.msgtype} record: "
                                    f"{exc}"
                                )
            except BagToolError as exc:
                info.errors.append(str(exc))
            for ts in info.topics.values():
                if ts.metadata_count is not None and ts.metadata_count != ts.count:
                    info.errors.append(
                        f"{ts.topic}: metadata says {ts.metadata_count} messages, "
                        f"{ts.count} readable"
                    )
        return info
    except BagToolError as exc:
        info.errors.append(str(exc))
    # Fallback: scan storage files directly.
    if p.is_dir():
        for topic, n in _metadata_counts(p).items():
            info.topics.setdefault(topic, TopicSummary(topic, "?")).metadata_count = n
    files = _storage_files(p)
    if not files:
        info.errors.append(f"no .mcap or .db3 storage file in {p}")
    for f in files:
        info.storage = f.suffix.lstrip(".")
        if f.suffix == ".mcap":
            _scan_mcap_stream(f, info)
        else:
            _scan_sqlite(f, info)
    return info


_CHECKSUM_TEXT = {
    "verified": "verified (MCAP chunk, data and summary CRCs match)",
    "none": "none (written without CRCs: corruption cannot be detected; re-convert the bag)",
    "failed": "FAILED (corrupt data, see errors)",
    "n/a": "n/a (sqlite3 storage)",
}


def _fmt_time(ns: int | None) -> str:
    return "-" if ns is None else f"{ns * 1e-9:.6f}"


def format_info(info: BagInfo) -> str:
    """Human-readable table (like ``ros2 bag info``)."""
    lines = [
        f"Bag:        {info.path}",
        f"Storage:    {info.storage or '?'}",
        f"Duration:   {info.duration_s:.3f} s",
        f"Start:      {_fmt_time(info.start_ns)} s",
        f"End:        {_fmt_time(info.end_ns)} s",
        f"Messages:   {info.message_count}",
        f"Status:     {'complete' if info.complete else 'INCOMPLETE (see errors)'}",
        f"Checksums:  {_CHECKSUM_TEXT.get(info.checksums, info.checksums)}",
        "Topics:",
    ]
    rows = sorted(info.topics.values(), key=lambda t: t.topic)
    w_topic = max([len(t.topic) for t in rows] + [5])
    w_type = max([len(t.msgtype) for t in rows] + [4])
    lines.append(f"  {'topic':<{w_topic}}  {'type':<{w_type}}  {'count':>7}  {'rate Hz':>8}")
    for t in rows:
        claimed = ""
        if t.metadata_count is not None and t.metadata_count != t.count:
            claimed = f"  (metadata: {t.metadata_count})"
        lines.append(
            f"  {t.topic:<{w_topic}}  {t.msgtype:<{w_type}}  {t.count:>7}  {t.rate_hz:>8.2f}"
            + claimed
        )
    for e in info.errors:
        lines.append(f"ERROR: {e}")
    return "\n".join(lines)
