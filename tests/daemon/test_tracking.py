"""Tracking in the running daemon: one answer per region, and OCR only when something changed."""

from __future__ import annotations

import pytest

from support.clips import write_line_clip
from support.daemon import Daemon, daemon_config, publish_endpoint
from support.subscriber import Subscriber

pytestmark = pytest.mark.slow


def test_one_track_with_its_changes_and_final_text(tmp_path) -> None:
    """Text in one place changes from FIRST LINE (1 s) to SECOND LINE (4 s), then the file ends."""
    clip = tmp_path / "change.mp4"
    write_line_clip(clip, ["FIRST LINE"] + ["SECOND LINE"] * 4, frames_each=10, lead_in=20)  # 2 s: the subscriber joins
    config = daemon_config(tmp_path, str(clip), loop=False, realtime=True, max_fps=10.0)
    with Subscriber(publish_endpoint(config), topics=("track.", "event.")) as sub, Daemon(config) as daemon:
        _, gone = sub.wait_for(lambda t, b: t == "track.cam1" and b["event"] == "gone", timeout=90)
        assert daemon.process.wait(timeout=30) == 0
    tracks = [b for t, b in sub.seen if t == "track.cam1"]
    assert [b["event"] for b in tracks].count("appeared") == 1
    assert [b["event"] for b in tracks].count("gone") == 1
    changes = [b["text"] for b in tracks if b["event"] == "changed"]
    assert changes[0] == "FIRST LINE" and changes[-1] == "SECOND LINE", changes
    assert gone["text"] == "SECOND LINE" and gone["reason"] == "finished"
    assert gone["reads"] >= 2 and gone["first_seq"] <= gone["last_seq"]


def test_a_static_scene_costs_a_small_fraction_of_per_frame_ocr(tmp_path) -> None:
    clip = write_line_clip(tmp_path / "static.mp4", ["STATIC SIGN"], frames_each=30)
    config = daemon_config(tmp_path, str(clip), loop=True, realtime=True, max_fps=10.0)
    with Subscriber(publish_endpoint(config), topics=("stats",)) as sub, Daemon(config) as daemon:
        is_busy = lambda t, b: b.get("process") == "detect-0" and b["frames"] >= 40  # noqa: E731
        _, stats = sub.wait_for(is_busy, timeout=90)
        assert daemon.terminate(timeout=20) == 0
    # refresh_s = 3 at 10 frames/s: about one read in 30 frames, plus the first
    assert stats["crops_sent"] * 5 <= stats["frames"], stats
    dropped = sum(stats["crops_dropped"].values())  # crops offered before the workers were up
    assert stats["ocr_skipped"]["unchanged"] + stats["crops_sent"] + dropped == stats["frames"]


def test_tracking_off_reads_every_frame(tmp_path) -> None:
    clip = write_line_clip(tmp_path / "static.mp4", ["STATIC SIGN"], frames_each=30)
    config = daemon_config(tmp_path, str(clip), loop=True, realtime=True, max_fps=10.0)
    config.write_text(config.read_text() + "\n[tracking]\nenabled = false\n")
    with Subscriber(publish_endpoint(config), topics=("stats", "track.")) as sub, Daemon(config) as daemon:
        is_busy = lambda t, b: b.get("process") == "detect-0" and b["frames"] >= 20  # noqa: E731
        _, stats = sub.wait_for(is_busy, timeout=90)
        assert daemon.terminate(timeout=20) == 0
    dropped = sum(stats["crops_dropped"].values())
    assert stats["crops_sent"] + dropped == stats["frames"]
    assert not [t for t, _ in sub.seen if t.startswith("track.")]


def moving_scene(path, fps: float = 4.0):
    """640x360, 60 frames: blank; PARKING 24 appears at 10 and moves right 4 px/frame;
    EXIT ONLY appears at 30 and stands still; both disappear at 50."""
    import cv2
    import numpy as np

    from textwatch.tools.samples import line_crop

    parking, exit_only = line_crop("PARKING 24", height=48), line_crop("EXIT ONLY", height=48)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 360))
    for index in range(60):
        frame = np.full((360, 640, 3), 200, np.uint8)
        if 10 <= index < 50:
            x = 40 + 4 * (index - 10)
            frame[60 : 60 + parking.shape[0], x : x + parking.shape[1]] = parking
        if 30 <= index < 50:
            frame[220 : 220 + exit_only.shape[0], 300 : 300 + exit_only.shape[1]] = exit_only
        writer.write(frame)
    writer.release()
    return path


def test_regions_appear_move_and_go_at_the_right_frames(tmp_path) -> None:
    """With the shipped detector: one appeared and one gone per region, at the frames the
    text appears and disappears, and the right final text."""
    from support.models import needs_shipped_model

    needs_shipped_model()
    clip = moving_scene(tmp_path / "moving.mp4")  # 4 frames/s in real time: every frame is detected
    config = daemon_config(tmp_path, str(clip), loop=False, realtime=True, max_fps=4.0, shipped_detector=True)
    with Subscriber(publish_endpoint(config), topics=("track.",)) as sub, Daemon(config) as daemon:
        assert daemon.process.wait(timeout=120) == 0
        try:
            sub.wait_for(lambda t, b: False, timeout=1.0)  # collect what is still queued
        except TimeoutError:
            pass
    events = [b for _, b in sub.seen]
    finals = {b["text"]: b for b in events if b["event"] == "gone"}
    assert set(finals) == {"PARKING 24", "EXIT ONLY"}, events
    appeared = [b for b in events if b["event"] == "appeared"]
    assert len(appeared) == 2 and len(finals) == 2
    parking, exit_only = finals["PARKING 24"], finals["EXIT ONLY"]
    assert abs(parking["first_seq"] - 10) <= 2 and abs(parking["last_seq"] - 49) <= 2, parking
    assert abs(exit_only["first_seq"] - 30) <= 2 and abs(exit_only["last_seq"] - 49) <= 2, exit_only
    assert parking["reason"] in ("missed", "aged") and exit_only["reason"] in ("missed", "aged")
