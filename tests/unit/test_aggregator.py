"""The publisher's frame aggregator: complete frames, timeouts, lost frames, bounded memory."""

from __future__ import annotations

import pytest

from support.messages import text_result
from textwatch.tracking.frames import LOST_AFTER_TIMEOUTS, FrameAggregator
from textwatch.wire import FrameNotice


def test_aggregator_publishes_a_complete_frame_sorted_by_region() -> None:
    agg = FrameAggregator(timeout_s=2.0)
    assert agg.add(text_result(region=2, regions=3, text="c"), now=100.1) == []
    assert agg.add(text_result(region=0, regions=3, text="a"), now=100.2) == []
    [frame] = agg.add(text_result(region=1, regions=3, text="b"), now=100.3)
    assert frame.complete and frame.missing == [] and [r["text"] for r in frame.regions] == ["a", "b", "c"]
    assert frame.latency_ms == pytest.approx(300.0)
    assert agg.add(text_result(region=1, regions=3), now=100.4) == [] and agg.counters.late == 1
    assert len(agg) == 0 and agg.expire(now=1e9) == []


def test_aggregator_times_out_an_incomplete_frame_with_missing() -> None:
    agg = FrameAggregator(timeout_s=2.0)
    agg.add(text_result(seq=7, region=0, regions=3), now=100.0)
    agg.add(text_result(seq=7, region=0, regions=3), now=100.5)
    assert agg.counters.duplicates == 1
    agg.add(text_result(seq=8, region=1, regions=2), now=101.0)
    assert agg.expire(now=101.9) == []
    [frame] = agg.expire(now=102.0)
    assert (frame.seq, frame.complete, frame.missing, len(frame.regions)) == (7, False, [1, 2], 1)
    [frame] = agg.expire(now=103.0)
    assert (frame.seq, frame.missing) == (8, [0])
    assert agg.counters.incomplete == 2 and len(agg) == 0
    assert agg.counters.regions_missing == 3, "a lost crop must be counted, not only listed in its frame"


def test_aggregator_publishes_a_frame_whose_every_crop_was_lost() -> None:
    """Regression: a frame whose only crops died with a killed worker vanished without a count, because
    the aggregator learnt of frames from their first result. Detect's FrameNotice announces them now."""
    agg = FrameAggregator(timeout_s=2.0)
    assert agg.expect(FrameNotice("cam", 5, 99.0, 2, 2), now=100.0) == []
    assert agg.next_deadline() == 100.0 + LOST_AFTER_TIMEOUTS * 2.0
    assert agg.expire(now=100.0 + LOST_AFTER_TIMEOUTS * 2.0 - 0.1) == [], "a backlog in the pool is not a loss"
    [frame] = agg.expire(now=100.0 + LOST_AFTER_TIMEOUTS * 2.0)
    assert (frame.seq, frame.complete, frame.missing, frame.regions) == (5, False, [0, 1], [])
    assert (agg.counters.lost, agg.counters.regions_missing, len(agg)) == (1, 2, 0)
    agg.add(text_result(seq=5, region=0, regions=2), now=200.0)
    assert agg.counters.late == 1


def test_aggregator_frame_notice_and_results_in_either_order() -> None:
    agg = FrameAggregator(timeout_s=2.0)
    agg.expect(FrameNotice("cam", 7, 99.0, 1, 1), now=100.0)
    [frame] = agg.add(text_result(seq=7, region=0, regions=1), now=100.5)
    assert frame.complete and agg.expect(FrameNotice("cam", 7, 99.0, 1, 1), now=100.6) == []
    agg.add(text_result(seq=8, region=0, regions=2), now=101.0)
    agg.expect(FrameNotice("cam", 8, 99.0, 2, 2), now=101.1)  # after its first region: the 2 s deadline stays
    [frame] = agg.expire(now=103.0)
    assert (frame.seq, frame.missing) == (8, [1])
    assert (agg.counters.lost, agg.counters.incomplete, agg.counters.regions_missing) == (0, 1, 1)
    assert agg.flush(now=104.0) == [] and agg.next_deadline() is None


def test_aggregator_loses_at_once_a_frame_the_full_pool_refused() -> None:
    """Regression: frames whose every crop was dropped at a full pool waited the 30 s lost deadline,
    and their 30 s latency swamped the bench's p95."""
    agg = FrameAggregator(timeout_s=2.0)
    [frame] = agg.expect(FrameNotice("cam", 9, 99.5, 3, 0), now=100.0)
    assert (frame.seq, frame.complete, frame.missing, frame.latency_ms) == (9, False, [0, 1, 2], 500.0)
    assert (agg.counters.lost, agg.counters.regions_missing, agg.next_deadline()) == (1, 3, None)


def test_aggregator_memory_is_bounded() -> None:
    agg = FrameAggregator(timeout_s=60.0, max_pending=10)
    emitted = []
    for seq in range(1000):
        emitted += agg.add(text_result(seq=seq, regions=2), now=100.0 + seq * 0.001)
    assert len(agg) == 10 and agg.counters.evicted == 990
    assert [f.seq for f in emitted] == list(range(990)) and all(f.missing == [1] for f in emitted)
    assert len(agg._done) <= 10
