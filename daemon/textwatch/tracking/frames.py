"""Frame aggregation: a frame's text results, collected from the pool, become one frame.<camera>.

The publisher feeds every text.<camera> result and every detect FrameNotice
(_frame.<camera>) into one FrameAggregator, and publishes what it returns. A
frame is published once: complete when every region came back, incomplete at
its deadline (with `missing` region indices), lost when detect sent its crops
and none came back. Every such loss is counted (AggregatorCounters), so no
region disappears silently.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field

from textwatch import wire

LOST_AFTER_TIMEOUTS = 15  # a sent frame none of whose crops came back is lost after this many frame timeouts
MAX_PENDING_FRAMES = 1024  # frames being collected; 5 fps x 2 s timeout x 100 cameras fits


@dataclass
class _Pending:
    camera: str
    seq: int
    ts: float
    regions: int
    deadline: float
    results: dict[int, wire.TextResult] = field(default_factory=dict)
    announced: bool = False  # detect's FrameNotice arrived: these regions were handed to the pool


@dataclass
class AggregatorCounters:
    frames: int = 0  # frames published with every region read
    incomplete: int = 0  # frames published at their deadline with regions missing
    evicted: int = 0  # frames published early (incomplete) because MAX_PENDING was reached
    duplicates: int = 0  # a region that arrived twice (the second is ignored)
    late: int = 0  # a region whose frame was already published (ignored)
    lost: int = 0  # frames sent to the pool none of whose regions came back (published incomplete)
    regions_missing: int = 0  # regions of published frames never read: lost with a worker, or past the deadline


class FrameAggregator:
    """Collects a frame's text results and emits its FrameResult once, when complete or due.

    Times are wall-clock UNIX seconds (`now`), the same clock as the capture `ts`,
    so latency_ms is capture-to-publish. A frame's deadline is timeout_s after its
    first region arrived (not after capture: a backlog of OCR must not make every
    frame time out before its first region is read). Memory is bounded: at most
    `max_pending` frames are collected, and the keys of the last `max_pending`
    published frames are remembered to recognise late regions.
    """

    def __init__(self, timeout_s: float, max_pending: int = MAX_PENDING_FRAMES) -> None:
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.counters = AggregatorCounters()
        self._pending: OrderedDict[tuple[str, int], _Pending] = OrderedDict()  # by first arrival
        self._done: OrderedDict[tuple[str, int], None] = OrderedDict()
        # Frames detect announced (FrameNotice) of which no region arrived yet, by announcement.
        # Their deadline is long (LOST_AFTER_TIMEOUTS): a backlog in the pool is not a loss.
        self._expected: OrderedDict[tuple[str, int], _Pending] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def expect(self, notice: wire.FrameNotice, now: float) -> list[wire.FrameResult]:
        """Detect sent this frame's crops; returns the frames this loses (usually none).

        A notice may arrive after the frame's first region (they come from
        different processes); then the frame is already pending and nothing
        changes. A frame of which the pool took no crop at all is lost at once;
        the oldest expected frame is lost when max_pending are expected.
        """
        key = (notice.camera, notice.seq)
        if key in self._pending:
            self._pending[key].announced = True
        if key in self._done or key in self._pending or key in self._expected:
            return []
        out = []
        if len(self._expected) >= self.max_pending:
            out.append(self._lose(next(iter(self._expected)), now))
        deadline = now + LOST_AFTER_TIMEOUTS * self.timeout_s
        self._expected[key] = _Pending(notice.camera, notice.seq, notice.ts, notice.regions, deadline, announced=True)
        if notice.sent == 0:
            out.append(self._lose(key, now))
        return out

    def add(self, result: wire.TextResult, now: float) -> list[wire.FrameResult]:
        """Take one region; returns the frames this completes or evicts (usually none or one)."""
        key = (result.camera, result.seq)
        if key in self._done:
            self.counters.late += 1
            return []
        expected = self._expected.pop(key, None)  # its first region arrived: the normal deadline applies
        out: list[wire.FrameResult] = []
        frame = self._pending.get(key)
        if frame is None:
            if len(self._pending) >= self.max_pending:
                out.append(self._emit(next(iter(self._pending)), now))
                self.counters.evicted += 1
            frame = _Pending(result.camera, result.seq, result.ts, max(1, result.regions), now + self.timeout_s,
                             announced=expected is not None)
            self._pending[key] = frame
        if result.region in frame.results:
            self.counters.duplicates += 1
        else:
            frame.results[result.region] = result
        if len(frame.results) >= frame.regions:
            self.counters.frames += 1
            out.append(self._emit(key, now))
        return out

    def awaits(self, result: wire.TextResult) -> bool | None:
        """Whether `result` fills a region detect handed to the pool and no result filled yet:
        True (it does), False (it cannot: the frame is published, the region filled, out of range,
        or the frame has another size), None (no notice of its frame yet: it may still come).

        The publisher takes results from remote workers only when this is True (processes/publisher.py).
        """
        key = (result.camera, result.seq)
        if key in self._done:
            return False
        frame = self._expected.get(key) or self._pending.get(key)
        if frame is None or not frame.announced:
            return None
        return frame.regions == result.regions and 0 <= result.region < frame.regions and result.region not in frame.results

    def expire(self, now: float) -> list[wire.FrameResult]:
        """Frames whose deadline passed, as incomplete FrameResults with their `missing` indices."""
        out = []
        while self._pending:
            key, frame = next(iter(self._pending.items()))
            if frame.deadline > now:
                break
            self.counters.incomplete += 1
            out.append(self._emit(key, now))
        while self._expected and next(iter(self._expected.values())).deadline <= now:
            out.append(self._lose(next(iter(self._expected)), now))
        return out

    def flush(self, now: float) -> list[wire.FrameResult]:
        """Every pending frame, incomplete, and every expected one, lost (on shutdown)."""
        out = []
        while self._pending:
            self.counters.incomplete += 1
            out.append(self._emit(next(iter(self._pending)), now))
        while self._expected:
            out.append(self._lose(next(iter(self._expected)), now))
        return out

    def next_deadline(self) -> float | None:
        deadlines = [frames[next(iter(frames))].deadline for frames in (self._pending, self._expected) if frames]
        return min(deadlines) if deadlines else None

    def _lose(self, key: tuple[str, int], now: float) -> wire.FrameResult:
        """An expected frame none of whose regions came back: published incomplete, every region missing."""
        self._pending[key] = self._expected.pop(key)
        self.counters.lost += 1
        return self._emit(key, now)

    def _emit(self, key: tuple[str, int], now: float) -> wire.FrameResult:
        frame = self._pending.pop(key)
        self._done[key] = None
        while len(self._done) > self.max_pending:
            self._done.popitem(last=False)
        indices = sorted(frame.results)
        missing = [i for i in range(frame.regions) if i not in frame.results]
        self.counters.regions_missing += len(missing)
        return wire.FrameResult(
            camera=frame.camera,
            seq=frame.seq,
            ts=frame.ts,
            regions=[asdict(frame.results[i]) for i in indices],
            missing=missing,
            complete=not missing,
            latency_ms=round((now - frame.ts) * 1000.0, 2),
        )
