"""The Prometheus exporter and `textwatch status`: stats -> metrics conversion, the status summary, its exit codes.

A real daemon scraped over HTTP is in daemon/test_daemon_metrics.py.
"""

from __future__ import annotations

import argparse

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from support.cli import run_status
from support.ports import free_port
from textwatch import metrics, wire
from textwatch.tools import status
from textwatch.config import Settings

SECRET_URL = "rtsp://admin:hunter2@10.0.0.7:554/stream1"
T0 = 1_700_000_000.0


def settings() -> Settings:
    return Settings.model_validate(
        {"cameras": [{"id": "door", "url": SECRET_URL}, {"id": "gate", "url": "rtsp://cam.local/x"}]}
    )


def exporter() -> metrics.Exporter:
    return metrics.Exporter(settings(), CollectorRegistry(), now=T0)


def detect_payload(frames_read: int, *, started: float | None = T0, up: bool = True, crops_sent: int = 0) -> dict:
    """A detect stats message as it comes off the bus."""
    camera = {
        "frames_read": frames_read, "frames_skipped": frames_read // 2, "frames_delivered": frames_read - frames_read // 2,
        "reconnects": 1, "stalls": 0, "read_errors": 0, "up": up, "crops_sent": crops_sent,
    }
    stats = {
        "v": 1, "process": "detect-0", "role": "detect", "ts": T0, "cameras": {"door": camera},
        "frames": frames_read, "batches": frames_read, "detect_ms_total": 20.0 * frames_read, "detect_ms_avg": 20.0,
        "crops_sent": crops_sent, "crops_dropped": {"queue_full": 3}, "rss_bytes": 100 << 20,
        "ocr_skipped": {}, "regions_ignored": {},
    }
    if started is not None:
        stats["started"] = started
    return stats


def detect_stats(frames_read: int, **fields: object) -> wire.Stats:
    return wire.stats_from_dict(detect_payload(frames_read, **fields))  # type: ignore[arg-type]


def worker_stats(text: int, *, started: float | None = T0, name: str = "ocr-0") -> wire.Stats:
    return wire.WorkerStats(process=name, ts=T0, crops_read=text, text=text, empty=0, failed=0, timeouts=0,
                            rejected=0, ocr_ms_total=50.0 * text, started=started, rss_bytes=80 << 20)


def publisher_stats(**counters: int) -> wire.Stats:
    zero = {key: 0 for key in wire.PUBLISHER_COUNTS}
    return wire.PublisherStats(process="publisher", ts=T0, **{**zero, **counters})  # type: ignore[arg-type]


def text_result(latency_ms: float, camera: str = "door", status: str = "text") -> wire.TextResult:
    return wire.TextResult(camera=camera, seq=1, ts=T0, region=0, regions=1, box=(0, 0, 10, 10), confidence=0.9,
                           status=status, text="HI", ocr_confidence=90.0, worker="ocr-0", latency_ms=latency_ms)


def value(exp: metrics.Exporter, name: str, **labels: str) -> float | None:
    return exp.registry.get_sample_value(f"textwatch_{name}", labels)


# ---------------------------------------------------------------- conversion


def test_counters_mirror_deltas_of_the_cumulative_stats() -> None:
    exp = exporter()
    exp.observe_stats(detect_stats(10), T0 + 1)
    exp.observe_stats(detect_stats(25), T0 + 2)
    exp.observe_stats(detect_stats(25), T0 + 3)
    assert value(exp, "frames_read_total", camera="door") == 25
    assert value(exp, "frames_processed_total", camera="door") == 25 - 12
    assert value(exp, "frames_skipped_total", camera="door") == 12
    assert value(exp, "reconnects_total", camera="door") == 1
    assert value(exp, "crops_dropped_total", process="detect-0", reason="queue_full") == 3
    assert value(exp, "source_up", camera="door") == 1
    assert value(exp, "detect_seconds_total", process="detect-0") == pytest.approx(0.5)
    assert value(exp, "detect_batch_seconds", process="detect-0") == pytest.approx(0.02)
    assert value(exp, "process_resident_memory_bytes", process="detect-0") == 100 << 20
    assert value(exp, "process_starts_total", process="detect-0") == 1


def test_a_restart_adds_the_new_counters_whole_and_counts_a_start() -> None:
    exp = exporter()
    exp.observe_stats(worker_stats(40), T0 + 1)
    exp.observe_stats(worker_stats(7, started=T0 + 100), T0 + 101)  # restarted: its counters began again
    assert value(exp, "ocr_crops_total", process="ocr-0", status="text") == 47
    assert value(exp, "ocr_seconds_total", process="ocr-0") == pytest.approx(47 * 0.05)
    assert value(exp, "process_starts_total", process="ocr-0") == 2
    assert value(exp, "process_start_time_seconds", process="ocr-0") == T0 + 100


def test_without_a_started_field_a_counter_that_went_down_is_a_restart() -> None:
    exp = exporter()
    exp.observe_stats(worker_stats(40, started=None), T0 + 1)
    exp.observe_stats(worker_stats(45, started=None), T0 + 2)
    exp.observe_stats(worker_stats(3, started=None), T0 + 3)
    assert value(exp, "ocr_crops_total", process="ocr-0", status="text") == 48
    assert value(exp, "process_starts_total", process="ocr-0") == 2


def test_a_process_older_than_a_restarted_publisher_is_not_counted_as_started() -> None:
    exp = exporter()
    exp.observe_stats(worker_stats(500, started=T0 - 3600), T0 + 1)
    assert value(exp, "process_starts_total", process="ocr-0") is None
    assert value(exp, "ocr_crops_total", process="ocr-0", status="text") == 500


def test_labels_name_cameras_by_id_never_by_url() -> None:
    exp = exporter()
    exp.observe_stats(detect_stats(10), T0 + 1)
    exp.observe_text(text_result(120.0))
    text = generate_latest(exp.registry).decode()
    assert 'camera="door"' in text
    assert "hunter2" not in text and "admin" not in text and "rtsp://" not in text and "10.0.0.7" not in text


def test_ocr_latency_histogram() -> None:
    exp = exporter()
    for latency in (5.0, 30.0, 200.0, 7000.0):
        exp.observe_text(text_result(latency))
    exp.observe_text(text_result(1.0, status="empty"))
    assert value(exp, "ocr_latency_seconds_count", camera="door") == 5
    assert value(exp, "ocr_latency_seconds_bucket", camera="door", le="0.01") == 2
    assert value(exp, "ocr_latency_seconds_bucket", camera="door", le="5.0") == 4
    assert value(exp, "ocr_results_total", camera="door", status="text") == 4
    assert value(exp, "ocr_results_total", camera="door", status="empty") == 1


def test_crops_in_flight_survives_results_that_overtake_the_stats() -> None:
    exp = exporter()
    exp.observe_stats(detect_stats(10, crops_sent=5), T0 + 1)
    for _ in range(6):  # 3 answered, then 3 of crops the next stats will count
        exp.observe_text(text_result(10.0))
    assert value(exp, "crops_in_flight", camera="door") == 0  # balance -1, shown as 0
    exp.observe_stats(detect_stats(20, crops_sent=8), T0 + 2)
    assert value(exp, "crops_in_flight", camera="door") == 2
    exp.observe_text(text_result(10.0))
    exp.observe_text(text_result(10.0))
    assert value(exp, "crops_in_flight", camera="door") == 0


def test_crops_sent_before_a_publisher_restart_are_a_baseline_for_crops_in_flight() -> None:
    exp = exporter()
    exp.observe_stats(detect_stats(10, crops_sent=100, started=T0 - 3600), T0 + 1)
    assert value(exp, "crops_in_flight", camera="door") == 0
    exp.observe_stats(detect_stats(20, crops_sent=105, started=T0 - 3600), T0 + 2)
    exp.observe_text(text_result(10.0))
    assert value(exp, "crops_in_flight", camera="door") == 4
    assert value(exp, "crops_sent_total", camera="door") == 105


def test_unknown_cameras_and_garbage_fields_are_ignored_and_counted() -> None:
    """Garbage counters never reach the exporter: wire.stats_from_dict refuses the whole message
    (the publisher counts it as rejected). What is valid on the wire but unknown to this
    daemon (a camera it has no config for, a name no label may carry) is ignored and counted."""
    exp = exporter()
    garbage = detect_payload(10)
    garbage["frames"] = "many"
    garbage["batches"] = float("inf")
    with pytest.raises(wire.WireError):
        wire.stats_from_dict(garbage)
    stranger = detect_payload(10)
    stranger["cameras"]["rtsp://user:pw@evil"] = {**stranger["cameras"]["door"]}
    stranger["cameras"].pop("door")
    exp.observe_stats(wire.stats_from_dict(stranger), T0 + 1)
    exp.observe_text(text_result(10.0, camera="nope"))
    exp.observe_stats(worker_stats(1, name="bad name with spaces"), T0 + 1)
    assert value(exp, "exporter_ignored_total", reason="unknown_camera") == 2
    assert value(exp, "exporter_ignored_total", reason="bad_process_name") == 1
    assert value(exp, "frames_read_total", camera="door") is None
    assert "user:pw" not in generate_latest(exp.registry).decode()


def test_silent_processes_lose_their_series() -> None:
    exp = exporter()
    exp.observe_stats(worker_stats(5, name="host-1234"), T0 + 1)
    exp.observe_stats(worker_stats(5, name="ocr-0"), T0 + 100)
    assert exp.forget_stale(T0 + 100) == ["host-1234"]
    assert value(exp, "process_resident_memory_bytes", process="host-1234") is None
    assert value(exp, "process_resident_memory_bytes", process="ocr-0") == 80 << 20


def test_rss_bytes_reads_this_process() -> None:
    rss = metrics.rss_bytes()
    assert rss is not None and 1 << 20 < rss < 64 << 30


# ---------------------------------------------------------------- status


def test_status_summary_quantiles_and_exit_codes() -> None:
    exp = exporter()
    exp.observe_stats(detect_stats(10, up=True), T0 + 1)
    for latency in [20.0] * 50 + [400.0] * 50:
        exp.observe_text(text_result(latency))
    summary = status.summarize(status.parse(generate_latest(exp.registry).decode()))
    assert summary.cameras["door"]["source_up"] == 1 and summary.cameras["door"]["read"] == 10
    assert 0.01 <= summary.latency[0.5] <= 0.025 and 0.25 <= summary.latency[0.95] <= 0.5
    assert summary.down(set()) == [] and summary.down({"door", "gate"}) == ["gate"]
    assert summary.dropped == {"queue_full": 3}
    text = status.render(summary, "http://x/metrics", {"door", "gate"})
    assert "door" in text and "not reported" in text and "p95" in text
    assert "regions never read: 0 (0 frames lost)" in text
    exp.observe_stats(publisher_stats(frames_lost=2, regions_missing=5), T0 + 2)
    summary = status.summarize(status.parse(generate_latest(exp.registry).decode()))
    assert (summary.regions_missing, summary.frames_lost) == (5, 2)


def test_quantile_matches_prometheus_interpolation() -> None:
    buckets = [(0.1, 10.0), (0.5, 30.0), (float("inf"), 40.0)]
    assert status.quantile(0.25, buckets) == pytest.approx(0.1)
    assert status.quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * 10 / 20)
    assert status.quantile(0.99, buckets) == 0.5  # in +Inf: the highest finite bound
    assert status.quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None


def test_url_from_listen() -> None:
    assert status.url_from_listen("0.0.0.0:9200") == "http://127.0.0.1:9200/metrics"
    assert status.url_from_listen("[::1]:9108") == "http://[::1]:9108/metrics"


def test_status_of_an_unreachable_endpoint_is_one_line_and_exit_69() -> None:
    result = run_status("--url", f"http://127.0.0.1:{free_port()}/metrics")
    assert result.returncode == 69, result
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("textwatch status: cannot reach")


def test_run_status_in_process_reports_a_down_camera(capsys) -> None:
    exp = exporter()
    exp.observe_stats(detect_stats(10, up=False), T0 + 1)
    port = free_port()
    exp.settings = Settings.model_validate({"metrics": {"listen": f"127.0.0.1:{port}"}}).metrics
    exp.serve()
    try:
        code = status.run_status(argparse.Namespace(url=f"http://127.0.0.1:{port}/metrics", config=None))
    finally:
        exp.close()
    assert code == 1
    assert "down" in capsys.readouterr().out


def test_the_change_gate_counts_frames_and_views_by_outcome() -> None:
    exp = exporter()
    for carried in (10, 40):
        payload = detect_payload(carried + 2)
        payload["gate"] = {"frames_detected": 2, "frames_carried": carried, "frames_full": 1, "views_detected": 9,
                           "views_carried": 7 * carried + 5, "roi_empty": 0}
        payload["cpu_ms_total"] = 100.0 * carried
        exp.observe_stats(wire.stats_from_dict(payload), T0 + carried)
    assert value(exp, "gate_frames_total", process="detect-0", outcome="carried") == 40
    assert value(exp, "gate_frames_total", process="detect-0", outcome="detected") == 2
    assert value(exp, "gate_frames_total", process="detect-0", outcome="full") == 1
    assert value(exp, "gate_frames_total", process="detect-0", outcome="roi_empty") == 0
    assert value(exp, "gate_views_total", process="detect-0", outcome="carried") == 285
    assert value(exp, "detect_cpu_seconds_total", process="detect-0") == pytest.approx(4.0)
