"""The capture+detect process: cameras in, crops out to the OCR pool.

One per GPU (one on CPU). It owns a reader thread per camera (newest frame
only), one Detector, a PUSH socket towards the workers and a PUB socket into
the publisher for events, empty frames and stats.

Sending never blocks capture: crops go out with a non-blocking send on a PUSH
whose SNDHWM is `pipeline.crop_hwm`; when the pool is behind (or absent) the
send fails with zmq.Again and the crop is dropped and counted
(`crops_dropped.queue_full`). The frame it belonged to is then published by
the aggregator as incomplete, with the region listed in `missing`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import zmq

from textwatch import bus
from textwatch.bus import Endpoints
from textwatch.capture import CameraReader, Frame
from textwatch.config import Settings
from textwatch.tracking.plan import RegionPlanner
from textwatch.detect.gate import GatedDetector, GateFrame
from textwatch.detect.geometry import crop
from textwatch.detect.runtime import Detection, make_detector
from textwatch.log import get_logger
from textwatch.media import MediaSender
from textwatch.metrics import rss_bytes
from textwatch.processes import child
from textwatch.processes.child import Process
from textwatch.wire import (
    TOPIC_EVENT,
    TOPIC_FRAME,
    TOPIC_FRAME_NOTICE,
    TOPIC_STATS,
    TOPIC_TRACK_NOTICE,
    CameraStats,
    CropHeader,
    DetectStats,
    FrameNotice,
    FrameResult,
    SourceEvent,
    encode_crop,
    encode_published,
)

IDLE_WAIT_S = 0.01
# At start, once the publisher listens, wait this long for a first OCR worker before reading
# frames (a worker loads its engine and waits for the publisher too). Bounded: a pool of remote
# workers only may join late, and until one does every crop is dropped and counted.
POOL_WAIT_S = 15.0
# Source events waiting for the loop to publish them. Readers emit at most one up
# and one down per outage (reconnects are backed off), so 1000 is minutes of a
# flapping camera; beyond it an event is dropped and counted (events_dropped), the
# reader thread never waits for the detect loop.
MAX_QUEUED_EVENTS = 1000


@dataclass
class DetectCounters:
    """What this process did since it started; published as wire.DetectStats."""

    frames: int = 0
    crops_sent: int = 0
    crops_sent_by_camera: Counter[str] = field(default_factory=Counter)
    crops_dropped: Counter[str] = field(default_factory=Counter)
    detect_ms_total: float = 0.0
    batches: int = 0  # batched forwards (a batch whose frames were all carried by the gate runs none)


class DetectProcess(Process):
    """The loop: take the newest frames, detect in one batch, send crops, publish the rest."""

    role = "detect"

    def __init__(self, settings: Settings, endpoints: Endpoints, name: str, stop: threading.Event) -> None:
        super().__init__(settings, endpoints, name, stop)
        self.log = get_logger()
        self.detector = make_detector(settings.detector)
        self.gated = GatedDetector(self.detector, {camera.id: camera.gate for camera in settings.cameras})
        self.context = zmq.Context()
        self.push = bus.crop_pusher(self.context, endpoints, settings)
        self.pub = bus.result_publisher(self.context, endpoints.results)
        self.events: queue.Queue[SourceEvent] = queue.Queue(maxsize=MAX_QUEUED_EVENTS)
        self.readers = [CameraReader(camera, on_event=self.queue_event) for camera in settings.cameras]
        self.last_seq = {camera.id: -1 for camera in settings.cameras}
        self.cameras = {camera.id: camera for camera in settings.cameras}
        self.stats = DetectCounters()
        self.planner = RegionPlanner(settings)
        self.media = MediaSender(settings.media)  # snapshot.<camera> and crop.<camera> pictures (media.py)
        self.started = time.time()
        self.next_stats = time.monotonic() + settings.pipeline.stats_interval_s
        self.wait_for_publisher(self.pub)  # events, frames and track notices sent before it listens are lost
        if not bus.wait_for_worker(self.push, POOL_WAIT_S, stop):
            self.log.warning("ocr_pool_not_reachable", waited_s=POOL_WAIT_S, note="reading frames anyway")
        for reader in self.readers:
            reader.start()

    def step(self) -> None:
        """One pass: events out, newest frames in, detect, crops out, stats when due."""
        self.publish_events()
        frames = self.newest_frames()
        if not frames:
            self.stop.wait(IDLE_WAIT_S)
        for start in range(0, len(frames), self.settings.pipeline.batch):
            batch = frames[start : start + self.settings.pipeline.batch]
            for frame, detections in zip(batch, self.detect(batch)):
                self.handle_frame(frame, detections)
            self.heartbeat.beat()  # progress after each batch: pipeline.hung_s bounds one batch, not a whole step
        self.publish_stats_when_due()

    def newest_frames(self) -> list[Frame]:
        frames = []
        for reader in self.readers:
            frame = reader.latest(self.last_seq[reader.camera_id])
            if frame is not None:
                self.last_seq[reader.camera_id] = frame.seq
                frames.append(frame)
        return frames

    def detect(self, frames: list[Frame]) -> list[list[Detection]]:
        """Each frame's detections through its camera's change gate (detect/gate.py): only the tiles that
        changed are detected, the boxes of the others are carried, so every frame still reaches the
        tracker (tracks stay alive, frames are counted) whether or not the network ran on it."""
        start = time.perf_counter()
        views_before = self.gated.counters.counts["views_detected"]
        detections = self.gated.detect_batch([GateFrame(f.camera, f.ts, f.image) for f in frames])
        self.stats.detect_ms_total += (time.perf_counter() - start) * 1000
        self.stats.batches += self.gated.counters.counts["views_detected"] > views_before
        self.stats.frames += len(frames)
        return detections

    def handle_frame(self, frame: Frame, detections: list[Detection]) -> None:
        """Plan the frame (filters, tracks), tell the publisher about tracks, send the crops to read.

        A frame with nothing detected is published straight away (regions: []),
        so subscribers see text disappear. With tracking, a frame whose regions
        were all skipped as unchanged produces no frame message: nothing new was
        read; the track.<camera> events carry the state.
        """
        plan = self.planner.plan(frame, detections)
        self.publish_snapshot(frame, plan.reads)
        for notice in plan.notices:
            self._publish(encode_published(TOPIC_TRACK_NOTICE, notice, frame.camera))
        if plan.detected == 0:
            empty = FrameResult(camera=frame.camera, seq=frame.seq, ts=frame.ts, regions=[])
            self._publish(encode_published(TOPIC_FRAME, empty, frame.camera))
        elif plan.reads:
            sent = self.send_crops(frame, plan.reads)
            notice = FrameNotice(camera=frame.camera, seq=frame.seq, ts=frame.ts, regions=len(plan.reads), sent=sent)
            self._publish(encode_published(TOPIC_FRAME_NOTICE, notice, frame.camera))

    def send_crops(self, frame: Frame, reads: list[tuple[Detection, int | None]]) -> int:
        """Each region to read as a crop message; one the pool cannot take now is dropped and counted.

        Returns how many the pool took."""
        camera = self.cameras[frame.camera]
        sent = 0
        for index, (detection, track) in enumerate(reads):
            pixels = crop(frame.image, detection.box)
            header = CropHeader(
                camera=frame.camera,
                seq=frame.seq,
                ts=frame.ts,
                region=index,
                regions=len(reads),
                box=detection.box,
                confidence=round(detection.confidence, 4),
                text_height=detection.line_height,
                shape=tuple(pixels.shape),  # type: ignore[arg-type]
                track=track,
                engine=camera.ocr_engine,
                charset=camera.filters.charset,
            )
            try:
                self.push.send_multipart(encode_crop(header, pixels), zmq.NOBLOCK, copy=False)
                sent += 1
                self.stats.crops_sent += 1
                self.stats.crops_sent_by_camera[frame.camera] += 1
                self.publish_media(self.media.crop(frame.camera, frame.seq, frame.ts, track, detection.box, pixels))
            except zmq.Again:
                self.stats.crops_dropped["queue_full"] += 1
                self.planner.unsent(frame.camera, track)
        return sent

    def publish_snapshot(self, frame: Frame, reads: list[tuple[Detection, int | None]]) -> None:
        """The frame and its boxes for the live view, within media.snapshot_fps: every live track's
        latest box with tracking, the regions to read without."""
        if self.planner.trackers:
            boxes = [(box, track) for (camera, track), box in self.planner.boxes.items() if camera == frame.camera]
        else:
            boxes = [(detection.box, track) for detection, track in reads]
        self.publish_media(self.media.snapshot(frame.camera, frame.seq, frame.ts, frame.image, boxes))

    def publish_media(self, message: list[bytes] | None) -> None:
        if message is not None:
            self._publish(message)

    def queue_event(self, event: SourceEvent) -> None:
        """Called from reader threads: never blocks; a full queue drops the event (counted)."""
        try:
            self.events.put_nowait(event)
        except queue.Full:
            self.stats.crops_dropped["events_full"] += 1

    def publish_events(self) -> None:
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            self._publish(encode_published(TOPIC_EVENT, event, event.camera))

    def publish_stats_when_due(self, force: bool = False) -> None:
        now = time.monotonic()
        if now < self.next_stats and not force:
            return
        self.next_stats = now + self.settings.pipeline.stats_interval_s
        counts = self.stats
        cameras = {
            reader.camera_id: CameraStats(**reader.counters.as_dict(), crops_sent=counts.crops_sent_by_camera[reader.camera_id])
            for reader in self.readers
        }
        stats = DetectStats(
            process=self.name, ts=time.time(), frames=counts.frames, batches=counts.batches,
            detect_ms_total=round(counts.detect_ms_total, 3),
            detect_ms_avg=round(counts.detect_ms_total / max(1, counts.batches), 2),
            crops_sent=counts.crops_sent, crops_dropped=dict(counts.crops_dropped), cameras=cameras,
            ocr_skipped=self.planner.skipped(), regions_ignored=dict(self.planner.ignored),
            started=self.started, rss_bytes=rss_bytes(),
            gate=self.gated.counters.as_dict(), cpu_ms_total=round(time.process_time() * 1000, 1),
            media_skipped=dict(self.media.dropped),
        )
        self._publish(encode_published(TOPIC_STATS, stats))

    def _publish(self, message: list[bytes]) -> None:
        """PUB never blocks; a message beyond the HWM is dropped by ZeroMQ (counted here)."""
        try:
            self.pub.send_multipart(message, zmq.NOBLOCK)
        except zmq.Again:
            self.stats.crops_dropped["publish_full"] += 1

    def done(self) -> bool:
        """All readers ended for good (non-looped files played to the end): exit 0, the daemon stops."""
        return all(reader.finished for reader in self.readers)

    def close(self) -> None:
        for reader in self.readers:
            reader.stop()
        for reader in self.readers:
            reader.join(timeout=2.0)
        self.publish_events()
        for notice in self.planner.finish(self.last_seq):
            self._publish(encode_published(TOPIC_TRACK_NOTICE, notice, notice.camera))
        self.publish_stats_when_due(force=True)  # final counters: every crop this process sent
        self.push.close(linger=int(self.settings.pipeline.shutdown_grace_s * 1000))
        self.pub.close(linger=500)
        self.context.term()


if __name__ == "__main__":
    raise SystemExit(child.main(DetectProcess, "detect-0"))
