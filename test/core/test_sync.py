"""StampSynchronizer and LatestSlot: pure, deterministic behaviour (stamps only, no wall clock)."""

from __future__ import annotations

import random
import threading

from lss_bev_ros.sync import CameraState, LatestSlot, StampSynchronizer, SyncedSet

CAMS = ("A", "B", "C")
SIX = ("F", "FL", "FR", "B", "BL", "BR")


def _sync(names=CAMS, **kw) -> StampSynchronizer:
    kw.setdefault("tolerance", 0.02)
    kw.setdefault("missing_timeout", 1.0)
    kw.setdefault("allow_partial", True)
    return StampSynchronizer(names, **kw)


def _feed(s: StampSynchronizer, arrivals) -> list[SyncedSet]:
    """arrivals: (camera, stamp) in arrival order -> emitted sets."""
    out = []
    for cam, t in arrivals:
        got = s.add_stamped(cam, t, f"{cam}@{t:.3f}")
        if got is not None:
            out.append(got)
    return out


def _kinds(s: StampSynchronizer) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for e in s.pop_events():
        out.setdefault(e.kind, set()).add(e.source)
    return out


def test_emits_when_all_cameras_within_tolerance() -> None:
    s = _sync()
    assert s.add_stamped("A", 1.000, "a1") is None
    assert s.add_stamped("B", 1.010, "b1") is None
    out = s.add_stamped("C", 0.995, "c1")
    assert out is not None
    assert out.items == {"A": "a1", "B": "b1", "C": "c1"}
    assert out.stamp == 1.010 and abs(out.spread - 0.015) < 1e-9
    assert s.stats.emitted_sets == 1 and not out.missing


def test_latest_complete_set_wins_over_an_older_incomplete_one() -> None:
    s = _sync()
    _feed(s, [("A", 1.0), ("B", 1.0), ("A", 1.1), ("B", 1.1)])
    out = s.add_stamped("C", 1.1, "c")
    assert out is not None and out.stamp == 1.1 and not out.missing
    assert s.add_stamped("C", 1.05, "older") is None  # not newer than C's last image
    assert s.stats.out_of_order == 1


def test_image_arriving_after_its_set_left_is_counted_late_and_named() -> None:
    s = _sync(missing_timeout=0.3)
    sets = _feed(s, [(c, t) for t in (0.0, 0.1, 0.2, 0.3, 0.4) for c in ("A", "B")])
    assert sets and all(x.missing == ("C",) for x in sets)  # went on without C after 0.3 s
    _feed(s, [("C", sets[-1].stamp)])
    assert _kinds(s).get("camera_late") == {"C"}
    assert s.stats.late == 1


def test_late_but_in_time_images_are_never_masked_at_2_and_12_hz() -> None:
    """Images arrive up to 0.6 s (in stamps of the others) late, in random order: all full."""
    rng = random.Random(4)
    for hz in (2.0, 12.0):
        s = _sync(SIX, tolerance=0.01, missing_timeout=1.0)
        arrivals, last = [], dict.fromkeys(SIX, 0.0)
        for i in range(60):
            t = i / hz
            for c in SIX:  # each topic in order (DDS keeps one publisher's order)
                last[c] = max(last[c], t + rng.uniform(0.0, 0.6))
                arrivals.append((last[c], c, t))
        sets = _feed(s, [(c, t) for _, c, t in sorted(arrivals)])
        assert len(sets) >= 50, hz
        assert all(not x.missing for x in sets), f"{hz} Hz: masked a camera that was in time"
        assert s.missing_sources() == () and s.offset_sources() == {}


def test_constant_clock_offset_is_named_and_the_others_go_on() -> None:
    for offset in (0.2, 3.0, -3.0, 86400.0):
        s = _sync(SIX, tolerance=0.05, missing_timeout=1.0)
        arrivals = []
        for i in range(30):
            t = 100.0 + 0.5 * i
            arrivals += [(c, t + (offset if c == "FR" else 0.0)) for c in SIX]
        sets = _feed(s, arrivals)
        assert len(sets) >= 24, (offset, len(sets))
        assert all(set(x.items) >= set(SIX) - {"FR"} for x in sets), offset
        assert set(s.offset_sources()) == {"FR"}, offset
        # within tolerance when measured at a set; within a frame when measured on arrival
        assert abs(s.offset_sources()["FR"] - offset) < (0.06 if abs(offset) < 1 else 0.55), offset
        kinds = _kinds(s)
        assert kinds["camera_offset"] == {"FR"}, (offset, kinds)
        assert "time_jump" not in kinds and "camera_missing" not in kinds, (offset, kinds)
        assert s.states()["F"] is CameraState.OK


def test_camera_back_in_step_rejoins_the_sets() -> None:
    s = _sync(CAMS, tolerance=0.05)
    _feed(s, [(c, 0.5 * i + (0.2 if c == "C" else 0.0)) for i in range(8) for c in CAMS])
    assert "C" in s.offset_sources()
    sets = _feed(s, [(c, 0.5 * i) for i in range(8, 12) for c in CAMS])
    assert sets and not sets[-1].missing
    assert s.offset_sources() == {}


def test_silent_camera_is_missing_then_back() -> None:
    s = _sync(CAMS, tolerance=0.01, missing_timeout=0.5)
    sets = _feed(s, [(c, 0.1 * i) for i in range(15) for c in CAMS if not (c == "C" and i > 2)])
    partial = [x for x in sets if x.missing]
    assert partial and all(x.missing == ("C",) and set(x.items) == {"A", "B"} for x in partial)
    assert min(x.stamp for x in partial) >= 0.7 - 1e-9  # C last seen at 0.2 s, 0.5 s timeout
    assert s.missing_sources() == ("C",)
    assert _kinds(s)["camera_missing"] == {"C"}
    sets = _feed(s, [(c, t) for t in (2.0, 2.1) for c in CAMS])
    assert sets and not sets[-1].missing and s.missing_sources() == ()


def test_policy_wait_emits_only_complete_sets() -> None:
    s = _sync(CAMS, tolerance=0.01, missing_timeout=0.5, allow_partial=False)
    sets = _feed(s, [(c, 0.1 * i) for i in range(15) for c in CAMS if not (c == "C" and i > 2)])
    assert [round(x.stamp, 6) for x in sets] == [0.0, 0.1, 0.2]
    assert s.missing_sources() == ("C",)


def test_pause_or_stamp_gap_of_all_cameras_keeps_full_sets() -> None:
    s = _sync(CAMS, tolerance=0.01, missing_timeout=0.5)
    sets = _feed(s, [(c, t) for t in (0.0, 0.1, 5.0, 5.1, 20.0) for c in CAMS])
    assert len(sets) == 5 and all(not x.missing for x in sets)


def test_looped_bag_restarts_synchronisation_without_losing_the_first_set() -> None:
    s = _sync(SIX, tolerance=0.01, time_jump=5.0)
    first = _feed(s, [(c, 100.0 + 0.5 * i) for i in range(20) for c in SIX])
    again = _feed(s, [(c, 100.0 + 0.5 * i) for i in range(4) for c in SIX])
    assert len(first) == 20
    assert [x.stamp for x in again] == [100.0, 100.5, 101.0, 101.5]
    assert all(not x.missing for x in again)
    assert _kinds(s)["time_jump"] == {""} and s.stats.time_jumps == 1


def test_one_camera_clock_jumping_back_is_not_a_time_jump() -> None:
    s = _sync(SIX, tolerance=0.01)
    _feed(s, [(c, 100.0 + 0.5 * i) for i in range(10) for c in SIX])
    sets = _feed(s, [(c, 105.0 + 0.5 * i - (50.0 if c == "B" else 0.0))
                     for i in range(10) for c in SIX])
    assert s.stats.time_jumps == 0
    assert len(sets) >= 6 and all(set(x.items) >= set(SIX) - {"B"} for x in sets)
    kinds = _kinds(s)
    assert kinds["camera_restarted"] == {"B"} and "B" in s.offset_sources()


def test_unknown_source_and_non_finite_stamp_are_counted() -> None:
    s = _sync()
    assert s.add_stamped("Z", 1.0, "z") is None
    assert s.add_stamped("A", float("nan"), "a") is None
    assert s.stats.unknown_source == 1 and s.stats.out_of_order == 1
    assert set(_kinds(s)) == {"unknown_source", "out_of_order"}


def test_latest_slot_drops_unconsumed_and_wakes_consumer() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # replaced 1
    assert slot.dropped == 1
    assert slot.take(timeout=0.1) == 2
    assert slot.take(timeout=0.05) is None
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take(timeout=5.0)))
    t.start()
    slot.close()
    t.join(2.0)
    assert got == [None]


def test_camera_that_always_delivers_first_is_not_an_offset_even_at_low_rate() -> None:
    for hz in (0.5, 2.0, 12.0):
        s = _sync(SIX, tolerance=0.01, missing_timeout=1.0)
        sets = _feed(s, [(c, i / hz) for i in range(20) for c in SIX])  # "F" always first
        assert len(sets) == 20 and all(not x.missing for x in sets), hz
        assert s.offset_sources() == {} and "camera_offset" not in _kinds(s), hz
