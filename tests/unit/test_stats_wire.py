"""Stats are wire messages like any other: typed in wire.py, validated where they are read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from textwatch import wire


def worker_stats(**fields: object) -> wire.WorkerStats:
    values = {"process": "ocr-0", "ts": 100.0, "crops_read": 3, "text": 2, "empty": 1, "failed": 0,
              "timeouts": 0, "rejected": 0, "ocr_ms_total": 12.5, "started": 90.0, "rss_bytes": 1 << 20}
    return wire.WorkerStats(**{**values, **fields})  # type: ignore[arg-type]


def detect_stats() -> wire.DetectStats:
    camera = wire.CameraStats(frames_read=5, frames_skipped=1, frames_delivered=4, reconnects=0, stalls=0,
                              read_errors=0, up=True, crops_sent=7)
    return wire.DetectStats(
        process="detect-0", ts=100.0, frames=4, batches=4, detect_ms_total=80.0, detect_ms_avg=20.0, crops_sent=7,
        crops_dropped={"queue_full": 1}, cameras={"door": camera}, ocr_skipped={"unchanged": 2},
        regions_ignored={}, started=90.0, rss_bytes=None,
    )


def round_trip(stats: wire.Stats) -> wire.Stats:
    topic, body = wire.decode_published(wire.encode_published(wire.TOPIC_STATS, stats))
    assert topic == wire.TOPIC_STATS
    return wire.stats_from_dict(body)


@pytest.mark.parametrize("stats", [worker_stats(), detect_stats()], ids=["worker", "detect"])
def test_stats_round_trip_through_the_wire(stats: wire.Stats) -> None:
    assert round_trip(stats) == stats


def test_unknown_rss_is_left_out_not_sent_as_null() -> None:
    """docs/protocol.md: rss_bytes is absent where unknown."""
    body = json.loads(wire.encode_published(wire.TOPIC_STATS, detect_stats())[1])
    assert "rss_bytes" not in body and body["role"] == "detect" and body["v"] == 1


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"text": -1}, "negative"),
        ({"crops_read": "many"}, "not an integer"),
        ({"ocr_ms_total": float("inf")}, "finite"),
        ({"role": "oracle"}, "unknown role"),
        ({"timeouts": None}, "timeouts"),
    ],
)
def test_malformed_stats_are_refused(change: dict, reason: str) -> None:
    body = {**wire.stats_payload(worker_stats()), **change}
    with pytest.raises(wire.WireError, match=reason):
        wire.stats_from_dict(body)


def test_a_crop_carries_its_cameras_engine_and_charset() -> None:
    header = wire.CropHeader(camera="gate", seq=1, ts=1.0, region=0, regions=1, box=(0, 0, 4, 2), confidence=0.9,
                             text_height=2.0, shape=(2, 4, 3), engine="ppocr", charset="AB01")
    decoded, _ = wire.decode_crop(wire.encode_crop(header, np.zeros((2, 4, 3), np.uint8)))
    assert (decoded.engine, decoded.charset) == ("ppocr", "AB01")


@pytest.mark.parametrize("field, value", [("engine", "gpt"), ("engine", 7), ("charset", "x" * 513), ("charset", None)])
def test_a_crop_with_a_foreign_engine_or_charset_is_refused(field: str, value: object) -> None:
    header = wire.CropHeader(camera="gate", seq=1, ts=1.0, region=0, regions=1, box=(0, 0, 4, 2), confidence=0.9,
                             text_height=2.0, shape=(2, 4, 3))
    frames = wire.encode_crop(header, np.zeros((2, 4, 3), np.uint8))
    body = {**json.loads(bytes(frames[0])), field: value}
    with pytest.raises(wire.WireError):
        wire.decode_crop([json.dumps(body).encode(), bytes(frames[1])])


def test_the_wire_knows_the_engines_the_config_offers() -> None:
    from typing import get_args

    from textwatch.config import Engine

    assert get_args(Engine) == wire.OCR_ENGINES


def test_a_frame_notice_cannot_claim_millions_of_regions() -> None:
    """Regression (the notice bomb): `_frame` notices were not capped, and the publisher built a
    `missing` list of every claimed region: 118 bytes in, 1 GB of publisher and a 189 MB message out."""
    notice = {"v": 1, "camera": "cam", "seq": 1, "ts": 1.0, "regions": 20_000_000, "sent": 0}
    with pytest.raises(wire.WireError, match="at most"):
        wire.frame_notice_from_dict(notice)
    assert wire.frame_notice_from_dict({**notice, "regions": wire.MAX_REGIONS}).regions == wire.MAX_REGIONS


def supervisor_stats(children: int = 2) -> wire.SupervisorStats:
    counts = wire.ChildCounts(starts=3, restarts=1, hung=1, recycled=1, timed_out=0)
    return wire.SupervisorStats(
        process="supervisor", ts=100.0, children={f"ocr-{i}": counts for i in range(children)}, started=90.0,
        rss_bytes=1 << 20,
    )


def test_the_supervisors_stats_round_trip_with_every_childs_counts() -> None:
    """Restart counts are the supervisor's own message (issue 22: they vanished with the publisher)."""
    assert round_trip(supervisor_stats()) == supervisor_stats()


@pytest.mark.parametrize(
    "children", [{"ocr-0": {"starts": 1}}, {"ocr-0": 3}, {"ocr-0": {k: -1 for k in wire.CHILD_COUNTS}}, []],
    ids=["missing", "not-an-object", "negative", "not-a-map"],
)
def test_malformed_supervisor_stats_are_refused(children: object) -> None:
    body = {**wire.stats_payload(supervisor_stats()), "children": children}
    with pytest.raises(wire.WireError):
        wire.stats_from_dict(body)


def test_supervisor_stats_cannot_claim_unbounded_children() -> None:
    body = wire.stats_payload(supervisor_stats(children=wire.MAX_CHILDREN + 1))
    with pytest.raises(wire.WireError, match="children"):
        wire.stats_from_dict(body)
