"""Tracking in the running daemon: one answer per region, and OCR only when something changed."""

from __future__ import annotations

import pytest

from daemon_harness import Daemon, Subscriber, daemon_config, publish_endpoint, write_line_clip

pytestmark = pytest.mark.slow


def test_one_track_with_its_changes_and_final_text(tmp_path) -> None:
    """Text in one place changes from FIRST LINE (1 s) to SECOND LINE (4 s), then the file ends."""
    clip = tmp_path / "change.mp4"
    write_line_clip(clip, ["FIRST LINE"] + ["SECOND LINE"] * 4, frames_each=10)
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
    # refresh_s = 2 at 10 frames/s: about one read in 20 frames, plus the first
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
