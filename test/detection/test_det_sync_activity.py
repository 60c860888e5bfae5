"""StampSynchronizer(missing_needs_activity=True), the mode detector_node uses: a pause of all
cameras does not turn the next set into a one-camera partial set; a dead camera still does."""

from __future__ import annotations

from lss_bev_ros.sync import StampSynchronizer

CAMS = ("A", "B", "C")


def _feed(s: StampSynchronizer, t: float, now: float, cams=CAMS):
    outs = [s.add(c, t, f"{c}{t}", now=now) for c in cams]
    return [o for o in outs if o is not None]


def test_pause_of_all_cameras_keeps_full_sets():
    for activity, expect_full in ((False, False), (True, True)):
        s = StampSynchronizer(CAMS, tolerance=0.01, missing_timeout=0.5, allow_partial=True,
                              missing_needs_activity=activity)
        assert len(_feed(s, 1.0, now=0.0)) == 1
        outs = _feed(s, 2.0, now=5.0)  # everyone silent for 5 s, then a full set arrives
        full = [o for o in outs if not o.missing]
        assert (len(full) == 1) == expect_full, (activity, outs)
        if not activity:  # the old behaviour: first camera alone, the others out of order
            assert outs[0].missing == ("B", "C") and s.stats.out_of_order == 2


def test_dead_camera_still_goes_partial_with_activity_rule():
    s = StampSynchronizer(CAMS, tolerance=0.01, missing_timeout=0.5, allow_partial=True,
                          missing_needs_activity=True)
    partial = []
    for i in range(20):
        t = 0.1 * i
        cams = CAMS if i <= 2 else ("A", "B")
        partial += [o for o in _feed(s, t, now=t, cams=cams) if o.missing]
    assert partial and all(o.missing == ("C",) for o in partial)
    assert min(o.stamp for o in partial) >= 0.7 - 1e-9
    assert s.missing_sources(now=2.0) == ("C",)


def test_add_stamped_is_clocked_by_the_newest_stamp():
    """The nodes' mode: no wall time at all. A camera is missing once the others' stamps moved on
    by > missing_timeout twice; an out-of-order stamp does not move the clock back."""
    s = StampSynchronizer(CAMS, tolerance=0.01, missing_timeout=0.6, allow_partial=True,
                          missing_needs_activity=True)
    assert s.stamp_clock == float("-inf")
    assert [s.add_stamped(c, 4.0, c) for c in CAMS][-1].stamp == 4.0
    assert s.add_stamped("A", 3.0, "late") is None and s.stats.out_of_order == 1
    assert s.stamp_clock == 4.0
    assert [s.add_stamped(c, 5.0, c) for c in ("A", "B")] == [None, None]  # one gap: waiting
    assert s.missing_sources(s.stamp_clock) == ()
    outs = [s.add_stamped(c, 5.5, c) for c in ("A", "B")]
    assert s.missing_sources(s.stamp_clock) == ("C",) and s.stamp_clock == 5.5
    got = [o for o in outs if o is not None]
    assert got and all(o.missing == ("C",) for o in got) and got[-1].stamp == 5.5
