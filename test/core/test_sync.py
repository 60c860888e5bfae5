"""StampSynchronizer and LatestSlot: pure, deterministic behaviour."""

from __future__ import annotations

import threading

from lss_bev_ros.sync import LatestSlot, StampSynchronizer

CAMS = ("A", "B", "C")


def test_emits_when_all_cameras_within_tolerance() -> None:
    s = StampSynchronizer(CAMS, tolerance=0.02)
    assert s.add("A", 1.000, "a1", now=0.0) is None
    assert s.add("B", 1.010, "b1", now=0.0) is None
    out = s.add("C", 0.995, "c1", now=0.0)
    assert out is not None
    assert out.items == {"A": "a1", "B": "b1", "C": "c1"}
    assert out.stamp == 1.010 and abs(out.spread - 0.015) < 1e-9
    assert s.stats.emitted_sets == 1


def test_latest_set_wins_and_stale_are_dropped() -> None:
    s = StampSynchronizer(CAMS, tolerance=0.01, queue_size=4)
    for t in (1.0, 1.1, 1.2):
        s.add("A", t, f"a{t}", now=0.0)
        s.add("B", t, f"b{t}", now=0.0)
    out = s.add("C", 1.2, "c1.2", now=0.0)
    assert out is not None and out.items["A"] == "a1.2"
    # A's and B's older messages were evicted, not emitted later
    assert s.add("C", 1.1, "late", now=0.0) is None
    assert s.stats.out_of_order == 1
    assert s.stats.evicted >= 4


def test_out_of_order_stamp_within_one_camera_is_rejected() -> None:
    s = StampSynchronizer(CAMS, tolerance=0.01)
    s.add("A", 2.0, "x", now=0.0)
    assert s.add("A", 1.5, "older", now=0.0) is None
    assert s.stats.out_of_order == 1


def test_missing_camera_waits_or_goes_partial() -> None:
    """10 Hz cameras; C stops after 0.3 s. Strict mode waits; partial mode goes on without C."""
    strict = StampSynchronizer(CAMS, tolerance=0.01, missing_timeout=0.5, allow_partial=False)
    partial = StampSynchronizer(CAMS, tolerance=0.01, missing_timeout=0.5, allow_partial=True)
    outs: dict[str, list] = {"strict": [], "partial": []}
    for i in range(15):
        t = 0.1 * i
        for name, s in (("strict", strict), ("partial", partial)):
            for cam in CAMS:
                if cam == "C" and i > 2:
                    continue
                out = s.add(cam, t, f"{cam}{i}", now=t)
                if out is not None:
                    outs[name].append(out)
    assert [round(o.stamp, 6) for o in outs["strict"]] == [0.0, 0.1, 0.2]
    assert strict.missing_sources(now=1.4) == ("C",)
    late = [o for o in outs["partial"] if o.missing]
    assert late, "partial mode never went on without C"
    assert all(o.missing == ("C",) and set(o.items) == {"A", "B"} for o in late)
    assert min(o.stamp for o in late) >= 0.7 - 1e-9  # C last seen at 0.2 s, 0.5 s timeout
    assert partial.stats.partial_sets == len(late)


def test_unknown_source_is_counted() -> None:
    s = StampSynchronizer(CAMS)
    assert s.add("Z", 1.0, "z", now=0.0) is None
    assert s.stats.unknown_source == 1


def test_latest_slot_drops_unconsumed_and_wakes_consumer() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.take(0.01) == 2
    assert slot.dropped == 1
    assert slot.take(0.01) is None
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take(5.0)))
    t.start()
    slot.put(3)
    t.join(2.0)
    assert got == [3]
    slot.close()
    assert slot.take(1.0) is None
