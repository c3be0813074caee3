"""`textwatch bench`: speed measured side by side in one run, printed as numbers.

Benchmarks, not timed unit tests: these shared machines are too noisy for
assertions on time, so the numbers are printed (JSON) and recorded in
docs/benchmarks.md together with the machine and the command.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from textwatch import bus, wire
from textwatch.config import CameraSettings, OcrSettings, Settings
from textwatch.errors import InputError, TextwatchError
from textwatch.recognize import make_engine, make_recognizer
from textwatch.tools.samples import SANS, SERIF, line_crop

BENCH_BATCH = 8  # bench ocr: crops per batched PP-OCR pass, against single reads, whatever ocr.batch says
BENCH_RCVHWM = 100_000  # the bench keeps every message of its window; the publisher's own HWM still applies

WORDS = "invoice total amount station exit platform north sample text align camera street open".split()


def machine() -> dict[str, object]:
    """Where a number was measured: CPU model and cores visible to this process."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version()}


def line_texts(count: int, seed: int = 7) -> list[str]:
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(count):
        words = rng.choice(WORDS, size=rng.integers(1, 4)).tolist()
        if rng.random() < 0.5:
            words.append(str(rng.integers(10, 99999)))
        texts.append(" ".join(words).title() if rng.random() < 0.3 else " ".join(words))
    return texts


LENGTH_BUCKETS = ((1, 8), (9, 16), (17, 200))  # characters per crop: a word, two words, a line


def time_engine(settings: OcrSettings, crops: list, rounds: int) -> tuple[list[float], list[str]]:
    """Seconds per read of each crop (mean over `rounds` passes), after one untimed warm-up read.

    Each read is timed on its own so that the result can be split by crop
    length: Tesseract's cost grows with the characters in a line, the
    command-line engine's process start-up does not.
    """
    recognizer = make_recognizer(settings)
    try:
        recognizer.read(crops[0])
        totals = [0.0] * len(crops)
        texts: list[str] = []
        for _ in range(rounds):
            texts = []
            for index, crop in enumerate(crops):
                start = time.perf_counter()
                texts.append(recognizer.read(crop).text)
                totals[index] += time.perf_counter() - start
    finally:
        recognizer.close()
    return [total / rounds for total in totals], texts


def engine_ratio(fast: list[float], slow: list[float]) -> float:
    """How many times faster the first engine reads the same crops (total time against total time)."""
    return round(sum(slow) / max(1e-9, sum(fast)), 1)


def by_length(texts: list[str], fast: list[float], slow: list[float]) -> list[dict[str, object]]:
    """Per-crop times and the ratio for short, medium and long crops (by characters of the true text)."""
    rows = []
    for low, high in LENGTH_BUCKETS:
        picked = [i for i, text in enumerate(texts) if low <= len(text) <= high]
        if not picked:
            continue
        fast_part, slow_part = [fast[i] for i in picked], [slow[i] for i in picked]
        rows.append({
            "chars": f"{low}-{high}" if high < 200 else f"{low}+",
            "crops": len(picked),
            "tesserocr_ms_per_crop": round(1000 * sum(fast_part) / len(picked), 2),
            "pytesseract_ms_per_crop": round(1000 * sum(slow_part) / len(picked), 2),
            "ratio": engine_ratio(fast_part, slow_part),
        })
    return rows


def call_overhead(settings: OcrSettings, calls: int = 5) -> float:
    """Seconds per engine call on a small white image: what a call costs before there is anything to read."""
    engine = make_engine(settings)
    blank = np.full((16, 16), 255, np.uint8)
    try:
        engine.read_words(blank)
        start = time.perf_counter()
        for _ in range(calls):
            engine.read_words(blank)
        return (time.perf_counter() - start) / calls
    finally:
        engine.close()


def bench_ocr(settings: OcrSettings, crops: int = 40, rounds: int = 3) -> dict[str, object]:
    """Every engine on the same rendered line crops; crops/s each, the Tesseract ratio, and where the time goes.

    `pytesseract_startup_ms` is the command-line engine on a blank crop: its
    fixed cost per call (process start, loading the language data), which the
    ratio is made of: pytesseract ≈ start-up + recognition, tesserocr ≈ recognition.
    """
    texts = line_texts(crops)
    images = [line_crop(t, height=28 + 6 * (i % 4), face=SANS if i % 2 else SERIF) for i, t in enumerate(texts)]
    fast, fast_texts = time_engine(settings.model_copy(update={"engine": "tesserocr"}), images, rounds)
    slow_settings = settings.model_copy(update={"engine": "pytesseract"})
    slow, slow_texts = time_engine(slow_settings, images, 1)
    startup = call_overhead(slow_settings)
    ppocr_settings = settings.model_copy(update={"engine": "ppocr"})
    paddle, paddle_texts = time_engine(ppocr_settings, images, rounds)
    batched = time_batched(ppocr_settings, images, rounds, BENCH_BATCH)
    return {
        "benchmark": "ocr",
        "crops": crops,
        "tesserocr_crops_per_s": round(len(fast) / sum(fast), 1),
        "pytesseract_crops_per_s": round(len(slow) / sum(slow), 1),
        "tesserocr_ms_per_crop": round(1000 * sum(fast) / len(fast), 2),
        "pytesseract_ms_per_crop": round(1000 * sum(slow) / len(slow), 2),
        "pytesseract_startup_ms": round(1000 * startup, 2),
        "ratio": engine_ratio(fast, slow),
        "by_length": by_length(texts, fast, slow),
        "tesserocr_exact": sum(a == b for a, b in zip(fast_texts, texts)),
        "pytesseract_exact": sum(a == b for a, b in zip(slow_texts, texts)),
        "engines": [
            engine_row("tesserocr", fast, fast_texts, texts),
            engine_row("pytesseract", slow, slow_texts, texts),
            engine_row("ppocr", paddle, paddle_texts, texts),
            {**engine_row("ppocr batched", batched, paddle_texts, texts), "batch": BENCH_BATCH},
        ],
        "machine": machine(),
    }


def engine_row(name: str, seconds: list[float], read: list[str], truth: list[str]) -> dict[str, object]:
    """One engine on the bench's crops: ms per crop, crops per second on one core, lines read exactly."""
    total = sum(seconds)
    return {
        "engine": name,
        "ms_per_crop": round(1000 * total / len(seconds), 2),
        "crops_per_s_per_core": round(len(seconds) / max(1e-9, total), 1),
        "exact": sum(a == b for a, b in zip(read, truth)),
    }


def time_batched(settings: OcrSettings, crops: list, rounds: int, batch: int) -> list[float]:
    """Seconds per crop when the crops go through read_batch in groups of `batch` (as a busy worker reads)."""
    recognizer = make_recognizer(settings)
    try:
        recognizer.read_batch(crops[:1])
        start = time.perf_counter()
        for _ in range(rounds):
            for first in range(0, len(crops), batch):
                recognizer.read_batch(crops[first : first + batch])
        per_crop = (time.perf_counter() - start) / (rounds * len(crops))
    finally:
        recognizer.close()
    return [per_crop] * len(crops)


# ---------------------------------------------------------------- the whole pipeline


def _supervise(settings: object) -> None:
    """Child entry for bench pipeline: the daemon exactly as `textwatch run` runs it."""
    from textwatch.log import setup_logging
    from textwatch.processes.supervisor import Supervisor

    setup_logging("warning", process="supervisor", json=True)
    raise SystemExit(Supervisor(settings).run())  # type: ignore[arg-type]


def pipeline_settings(
    settings: Settings, video: Path, fast: bool, fps: float, runtime: Path, port: int, scheduling: bool,
    gating: bool = True,
) -> Settings:
    """The bench's variant of a config: one camera on `video` (the config's first camera's change gate,
    on or off), private sockets, no metrics port, its history in the run's own folder (regression: bench
    runs wrote their tracks into the user's history database)."""
    gate = settings.cameras[0].gate.model_copy(update={"enabled": gating})
    camera = CameraSettings(id="bench", url=str(video), loop=True, realtime=not fast, max_fps=fps, gate=gate)
    bus = settings.bus.model_copy(update={
        "runtime_dir": runtime, "publish": f"tcp://127.0.0.1:{port}", "pool": "",
        # loopback only, read by this process: no CURVE even when the config has keys
        "curve_secret_key": None, "curve_allowed_keys": None, "curve_client_secret_key": None, "curve_server_key": None,
    })
    pipeline = settings.pipeline.model_copy(update={"stats_interval_s": 1.0})
    return settings.model_copy(update={
        "cameras": [camera], "bus": bus, "pipeline": pipeline,
        "tracking": settings.tracking.model_copy(update={"enabled": True, "schedule": scheduling}),
        "metrics": settings.metrics.model_copy(update={"enabled": False}),
        "history": settings.history.model_copy(update={"database": runtime / "history.sqlite3"}),
    })


SCENES = ("sample", "static", "moving")


def scene_video(scene: str, folder: Path, fps: float = 10.0, frames: int = 100) -> Path:
    """The bundled sample clip, or a 1280x720 window with ~12 lines, still or drifting 3 px per frame."""
    if scene == "sample":
        return Path(__file__).parents[1] / "data" / "sample.mp4"
    import cv2

    from textwatch.tools.samples import document_window

    base, _ = document_window(1280, 720)
    path = folder / f"{scene}.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (1280, 720))
    for index in range(frames):
        shift = 0 if scene == "static" else 3 * (index % 50)
        matrix = np.float32([[1, 0, -shift], [0, 1, shift / 3]])
        writer.write(base if shift == 0 else cv2.warpAffine(base, matrix, (1280, 720), borderValue=(236, 236, 236)))
    writer.release()
    return path


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    array = np.array(values)
    return {f"p{q}": round(float(np.percentile(array, q)), 1) for q in (50, 95, 99)}


def bench_pipeline(
    settings: Settings, seconds: float, fast: bool, fps: float, scene: str = "sample", scheduling: bool = True,
    warmup: float = 5.0, gating: bool = True,
) -> dict[str, object]:
    """Run the daemon on the bundled 1280x720 sample video and measure it from a subscriber.

    Latency is capture to publish of each `frame.<camera>` (all regions of the
    frame read) and of each `text.<camera>`. Queue growth shows as latency that
    rises from the first to the last third of the run. Tracking is on in both
    scheduling modes, so `consolidated_text` (the daemon's own track texts)
    compares what the scene reads with and without OCR scheduling.
    """
    with running_daemon(settings, scene, fast, fps, scheduling, gating) as (sub, daemon, run_settings):
        messages = _collect(sub, seconds, warmup)
        at_stop = _drain_at_stop(sub, daemon)
    window = [message for message in messages if message[0] >= 0]
    summary = _summarise(window, seconds, fast, fps, run_settings)
    return {
        "scene": scene, "scheduling": scheduling, "gating": gating, **summary, **_gate_summary(window),
        "consolidated_text": tracked_texts(messages + at_stop),
    }


def _drain_at_stop(sub: Any, daemon: Any, timeout: float = 30.0) -> list[tuple[float, str, Any]]:
    """Stop the daemon (SIGTERM, as systemd does) and take what it publishes while it stops: a `gone`
    event with its final text for every live track. The texts then do not depend on the subscriber
    having joined before the first reads (regression: a subscriber still in its reconnect backoff
    when a still scene's tracks were read missed 3 of 11 texts, and two runs seemed to differ)."""
    daemon.terminate()
    drained: list[tuple[float, str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (daemon.is_alive() or sub.poll(500)):
        if sub.poll(200):
            topic, body = _decode(sub.recv_multipart())
            if topic.startswith("track."):
                drained.append((math.inf, topic, body))
    return drained


def tracked_texts(messages: list[tuple[float, str, dict]]) -> list[str]:
    """The daemon's own consolidated text: each track's latest text from its `track.` events, sorted.

    Events from the start of the run count (a static scene's tracks appear and
    settle during the warm-up, before the measured window).
    """
    latest: dict[int, str] = {}
    for _, topic, body in messages:
        if topic.startswith("track.") and body["event"] != "appeared":
            latest[body["track"]] = body["text"]
    return sorted(text for text in latest.values() if text)


def compare_runs(on: dict[str, Any], off: dict[str, Any]) -> dict[str, object]:
    """Scheduling on against off: how much OCR it saves, and whether the consolidated text stayed the same.

    OCR calls are compared per frame through the detector as well as per
    second: on two cores the OCR of every crop slows the detector, so the
    per-second ratio understates what scheduling saves at equal frame rates.
    """
    from collections import Counter

    only_on = Counter(on["consolidated_text"]) - Counter(off["consolidated_text"])
    only_off = Counter(off["consolidated_text"]) - Counter(on["consolidated_text"])
    return {
        "ocr_calls_ratio_off_to_on": round(off["ocr_calls_per_s"] / max(0.01, on["ocr_calls_per_s"]), 1),
        "ocr_calls_per_frame_ratio_off_to_on": round(
            off["ocr_calls_per_frame"] / max(0.001, on["ocr_calls_per_frame"]), 1
        ),
        "same_consolidated_text": not only_on and not only_off,
        "texts_on": len(on["consolidated_text"]),
        "texts_off": len(off["consolidated_text"]),
        "only_with_scheduling": sorted(only_on.elements()),
        "only_without_scheduling": sorted(only_off.elements()),
    }


@contextmanager
def running_daemon(
    settings: Settings, scene: str, fast: bool, fps: float, scheduling: bool, gating: bool = True
) -> Iterator[tuple[Any, Any, Settings]]:
    """The daemon (as `textwatch run` runs it) on a looped scene, and a SUB on its bus, for the bench."""
    import multiprocessing as mp
    import socket
    import tempfile

    import zmq

    with socket.socket() as probe:  # a free port for the daemon's publish endpoint
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="textwatch-bench-") as runtime:
        video = scene_video(scene, Path(runtime), fps)
        run_settings = pipeline_settings(settings, video, fast, fps, Path(runtime), port, scheduling, gating)
        context = zmq.Context()
        topics = ("frame.", "text.", wire.TOPIC_STATS, "track.")
        sub = bus.subscriber(context, run_settings.bus.publish, topics, rcvhwm=BENCH_RCVHWM)
        daemon = mp.get_context("spawn").Process(target=_supervise, args=(run_settings,))
        daemon.start()
        try:
            yield sub, daemon, run_settings
        finally:
            daemon.terminate()
            daemon.join(30)
            sub.close()
            context.term()


def _decode(frames: list[bytes]) -> tuple[str, Any]:
    """(topic, payload): a stats payload as its typed wire.Stats, any other as its dict."""
    topic, body = wire.decode_published(frames)
    return topic, (wire.stats_from_dict(body) if topic == wire.TOPIC_STATS else body)


def _collect(sub: Any, seconds: float, warmup: float) -> list[tuple[float, str, Any]]:
    """Every message until `seconds` s after the first frame plus `warmup` s.

    Each comes with its time from the start of the measured window: negative
    during the warm-up, -inf before the first frame. Rates and latencies use
    t >= 0 only; track events count from the start.
    """
    messages: list[tuple[float, str, dict]] = []
    start: float | None = None
    deadline = time.monotonic() + 120  # the daemon must publish a first frame within 2 min
    while time.monotonic() < deadline:
        if not sub.poll(200):
            continue
        topic, body = _decode(sub.recv_multipart())
        now = time.monotonic()
        if start is None and topic.startswith("frame."):
            start = now + warmup
            deadline = start + seconds
        messages.append((now - start if start is not None else -math.inf, topic, body))
    if start is None:
        raise TextwatchError("bench pipeline: the daemon published no frame within 120 s")
    return messages


Span = tuple[tuple[float, wire.DetectStats], tuple[float, wire.DetectStats]]


def _detect_span(messages: list[tuple[float, str, Any]]) -> Span | None:
    """The first and last detect stats of the window, with their times; None with fewer than two."""
    detect = [(t, b) for t, _, b in messages if isinstance(b, wire.DetectStats)]
    return (detect[0], detect[-1]) if len(detect) >= 2 else None


def _detect_rate(messages: list[tuple[float, str, dict]]) -> float:
    """Frames through the detector per second, from the first and last detect stats in the window."""
    span = _detect_span(messages)
    if span is None or span[1][0] <= span[0][0]:
        return float("nan")
    (t0, first), (t1, last) = span
    return round((last.frames - first.frames) / (t1 - t0), 2)


def _calls_per_frame(messages: list[tuple[float, str, dict]]) -> float:
    """Crops read per frame through the detector, from the first and last detect stats in the window."""
    span = _detect_span(messages)
    if span is None or span[1][1].frames <= span[0][1].frames:
        return float("nan")
    (_, first), (_, last) = span
    return round((last.crops_sent - first.crops_sent) / (last.frames - first.frames), 2)


def _summarise(messages: list[tuple[float, str, dict]], seconds: float, fast: bool, fps: float, settings: Settings) -> dict[str, object]:
    frames = [(t, b) for t, topic, b in messages if topic.startswith("frame.")]
    texts = [b for _, topic, b in messages if topic.startswith("text.")]
    stats = {b.process: b for _, topic, b in messages if topic == wire.TOPIC_STATS}
    detect = stats.get("detect-0")
    detect = detect if isinstance(detect, wire.DetectStats) else None
    camera = detect.cameras.get("bench") if detect is not None else None
    third = [[b["latency_ms"] for t, b in frames if lo <= t < hi] for lo, hi in ((0, seconds / 3), (2 * seconds / 3, seconds))]
    return {
        "benchmark": "pipeline",
        "mode": "as fast as possible" if fast else f"real time, capped at {fps} frames/s",
        "seconds": seconds,
        "frames_per_s": _detect_rate(messages),
        "frame_messages_per_s": round(len(frames) / seconds, 2),
        "crops_per_s": round(len(texts) / seconds, 2),
        "regions_per_frame": round(len(texts) / max(1, len(frames)), 1),
        "frame_latency_ms": percentiles([b["latency_ms"] for _, b in frames]),
        "text_latency_ms": percentiles([b["latency_ms"] for b in texts]),
        "latency_first_third_p50": percentiles(third[0])["p50"],
        "latency_last_third_p50": percentiles(third[1])["p50"],
        "incomplete_frames": sum(not b.get("complete", True) for _, b in frames),
        "crops_dropped": detect.crops_dropped if detect else {},
        "frames_skipped": camera.frames_skipped if camera else None,
        "frames_read": camera.frames_read if camera else None,
        "detect_ms_per_batch": detect.detect_ms_avg if detect else None,
        "ocr_calls_per_s": round(len(texts) / seconds, 2),
        "ocr_calls_per_frame": _calls_per_frame(messages),
        "ocr_skipped": detect.ocr_skipped if detect else {},
        "track_events": sum(topic.startswith("track.") for _, topic, _ in messages),
        "workers": len([p for p in stats if p.startswith("ocr-")]),
        "crops_stale": _stale_in_window(messages),
        "detector": f"{settings.detector.cfg.name} backend={settings.detector.backend} tiling={settings.detector.tiling}",
        "machine": machine(),
    }


def _stale_in_window(messages: list[tuple[float, str, Any]]) -> int:
    """Crops the workers answered "stale" (older than pipeline.crop_max_age_s) within the window."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for _, _, body in messages:
        if isinstance(body, wire.WorkerStats):
            first.setdefault(body.process, body.stale)
            last[body.process] = body.stale
    return sum(last[name] - first[name] for name in last)


def _gate_summary(messages: list[tuple[float, str, Any]]) -> dict[str, object]:
    """What the change gate did in the window, and the detect step's time and detect's CPU per frame."""
    span = _detect_span(messages)
    if span is None or span[1][1].frames <= span[0][1].frames:
        return {"gate": {}, "detect_ms_per_frame": float("nan"), "detect_cpu_ms_per_frame": float("nan")}
    (_, first), (_, last) = span
    frames = last.frames - first.frames
    return {
        "gate": {key: value - first.gate.get(key, 0) for key, value in last.gate.items()},
        "detect_ms_per_frame": round((last.detect_ms_total - first.detect_ms_total) / frames, 1),
        "detect_cpu_ms_per_frame": round((last.cpu_ms_total - first.cpu_ms_total) / frames, 1),
    }


def compare_gating(on: dict[str, Any], off: dict[str, Any]) -> dict[str, object]:
    """Gating on against off: frames/s, detector time and CPU per frame, latency, and the same texts?"""
    from collections import Counter

    only_on = Counter(on["consolidated_text"]) - Counter(off["consolidated_text"])
    only_off = Counter(off["consolidated_text"]) - Counter(on["consolidated_text"])
    return {
        "scheduling": on["scheduling"],
        "frames_per_s_on_to_off": round(on["frames_per_s"] / max(0.01, off["frames_per_s"]), 2),
        "detect_ms_per_frame_off_to_on": round(off["detect_ms_per_frame"] / max(0.01, on["detect_ms_per_frame"]), 1),
        "detect_cpu_per_frame_off_to_on": round(
            off["detect_cpu_ms_per_frame"] / max(0.01, on["detect_cpu_ms_per_frame"]), 1
        ),
        "frame_latency_p50_on_off": [on["frame_latency_ms"]["p50"], off["frame_latency_ms"]["p50"]],
        "frame_latency_p99_on_off": [on["frame_latency_ms"]["p99"], off["frame_latency_ms"]["p99"]],
        "same_consolidated_text": not only_on and not only_off,
        "only_with_gating": sorted(only_on.elements()),
        "only_without_gating": sorted(only_off.elements()),
    }


# ---------------------------------------------------------------- the detector alone


def detector_backends() -> list[str]:
    """Every backend this machine can run, in the order they are reported."""
    from textwatch.detect.runtime import cuda_device_count, torch_device

    backends = ["cpu"]
    if cuda_device_count() > 0:
        backends += ["cuda", "cuda-fp16"]
    if torch_device() is not None:
        backends.append("torch")
    return backends


def bench_detector(settings: Settings, batches: list[int], seconds: float) -> dict[str, object]:
    """Forward passes (input already letterboxed, no tiling) per backend and batch size.

    Each cell runs for about `seconds` after one untimed warm-up forward, and
    reports frames/s and milliseconds per batch, including the host-device copies.
    """
    from textwatch.detect.runtime import Detector

    rng = np.random.default_rng(0)
    rows = []
    for backend in detector_backends():
        detector = Detector(settings.detector.model_copy(update={"backend": backend, "tiling": "off"}))
        width, height = detector.input_size
        for batch in batches:
            inputs = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(batch)]
            detector._forward(inputs)  # warm-up: CUDA kernels, cuDNN plans, allocator
            runs, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds or runs < 2:
                detector._forward(inputs)
                runs += 1
            elapsed = time.perf_counter() - start
            rows.append({
                "backend": detector.net.name,
                "batch": batch,
                "frames_per_s": round(runs * batch / elapsed, 1),
                "ms_per_batch": round(elapsed / runs * 1000, 2),
            })
    return {
        "benchmark": "detector",
        "model": f"{settings.detector.cfg.name} {width}x{height}",
        "results": rows,
        "machine": machine(),
    }


# ---------------------------------------------------------------- the two detectors side by side


def bench_detectors(settings: Settings, folders: list[Path], per_folder: int, rounds: int) -> dict[str, object]:
    """detector.model yolo against ppocr: whole detect() calls (tiling, merging and line
    geometry included for yolo; resize, network and box extraction for ppocr) on the same
    images in one run: every 10th frame of the bundled sample, plus the first `per_folder`
    images of each folder given. Each model warms up on the first image, then reads every
    image `rounds` times; the median per image is reported, and their ratio."""
    from textwatch.detect.runtime import make_detector

    images = bench_images(folders, per_folder)
    rows: dict[str, dict[str, object]] = {}
    for model in ("yolo", "ppocr"):
        detector = make_detector(settings.detector.model_copy(update={"model": model}))
        detector.detect(images[0][1])
        per_set: dict[str, list[float]] = {}
        boxes = 0
        for name, image in images:
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                found = detector.detect(image)
                times.append((time.perf_counter() - start) * 1000)
            boxes += len(found)
            per_set.setdefault(name, []).append(float(np.median(times)))
        every = [t for ts in per_set.values() for t in ts]
        rows[model] = {
            "ms_per_image_median": round(float(np.median(every)), 1),
            "ms_per_image_mean": round(float(np.mean(every)), 1),
            "by_set_ms_median": {k: round(float(np.median(v)), 1) for k, v in per_set.items()},
            "boxes_per_image": round(boxes / len(images), 1),
        }
    return {
        "benchmark": "detectors",
        "images": {name: sum(n == name for n, _ in images) for name, _ in images},
        "rounds": rounds,
        "results": rows,
        "ppocr_over_yolo_mean": round(rows["ppocr"]["ms_per_image_mean"] / rows["yolo"]["ms_per_image_mean"], 2),  # type: ignore[operator]
        "machine": machine(),
    }


def bench_images(folders: list[Path], per_folder: int) -> list[tuple[str, np.ndarray]]:
    """(set name, BGR image): the bundled sample's every 10th frame, then each folder's first images."""
    import cv2

    images = []
    capture = cv2.VideoCapture(str(Path(__file__).parents[1] / "data" / "sample.mp4"))
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % 10 == 0:
            images.append(("sample_1280x720", frame))
        index += 1
    capture.release()
    for folder in folders:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:per_folder]
        if not files:
            raise InputError(f"{folder}: no .jpg or .png images")
        images += [(folder.name, image) for image in (cv2.imread(str(p)) for p in files) if image is not None]
    return images


# ---------------------------------------------------------------- soak: memory over time


def bench_soak(
    settings: Settings, minutes: float, interval: float, fast: bool, fps: float = 10.0, warmup: float = 30.0
) -> dict[str, object]:
    """Run the daemon on the looped sample video for `minutes` and sample every process's RSS.

    Every `interval` s one sample holds each process's latest `rss_bytes` (from
    its stats; the supervisor's from /proc). Growth per process compares the
    mean of the last minute with the mean of the first minute after `warmup`.
    A process whose `started` changed (a restart or a recycle) is reported with
    its start count: its RSS series then mixes several lives.
    """
    with running_daemon(settings, "sample", fast, fps, scheduling=True) as (sub, daemon, _):
        samples, starts, totals = _sample_rss(sub, daemon.pid, minutes * 60.0, interval, warmup)
    return {
        "benchmark": "soak",
        "mode": "as fast as possible" if fast else f"real time, capped at {fps} frames/s",
        "minutes": minutes,
        "interval_s": interval,
        "warmup_s": warmup,
        "growth": rss_growth(samples, minutes * 60.0),
        "starts": starts,
        **totals,
        "samples": samples,
        "machine": machine(),
    }


def _sample_rss(
    sub: Any, supervisor_pid: int, seconds: float, interval: float, warmup: float
) -> tuple[list[dict[str, object]], dict[str, int], dict[str, int]]:
    """RSS samples (t, MB per process) from the first frame + warmup on, for `seconds`."""
    latest: dict[str, int] = {}
    lives: dict[str, set[float]] = {}
    counts: dict[str, int] = {}
    samples: list[dict[str, object]] = []
    start: float | None = None
    deadline = time.monotonic() + 120  # the daemon must publish a first frame within 2 min
    next_sample = 0.0
    while time.monotonic() < deadline:
        if sub.poll(100):
            topic, body = _decode(sub.recv_multipart())
            if start is None and topic.startswith("frame."):
                start = time.monotonic() + warmup
                deadline, next_sample = start + seconds, start
            if topic == wire.TOPIC_STATS and body.rss_bytes is not None:
                latest[body.process] = body.rss_bytes
                lives.setdefault(body.process, set()).add(body.started or 0.0)
                counts[body.process] = _work_done(body)
        now = time.monotonic()
        if start is not None and now >= next_sample:
            rss = {name: round(value / 2**20, 1) for name, value in sorted(latest.items())}
            supervisor = _proc_rss(supervisor_pid)
            if supervisor is not None:
                rss["supervisor"] = round(supervisor / 2**20, 1)
            samples.append({"t": round(now - start, 1), "rss_mb": rss})
            next_sample += interval
    if start is None:
        raise TextwatchError("bench soak: the daemon published no frame within 120 s")
    totals = {
        "frames": sum(v for k, v in counts.items() if k.startswith("detect")),
        "crops_read": sum(v for k, v in counts.items() if not k.startswith(("detect", "publisher"))),
    }
    return samples, {name: len(started) for name, started in sorted(lives.items())}, totals


def _work_done(stats: wire.Stats) -> int:
    """What a process's count of work is: frames for detect, crops read for a worker (0 for the publisher)."""
    if isinstance(stats, wire.DetectStats):
        return stats.frames
    return stats.crops_read if isinstance(stats, wire.WorkerStats) else 0


def _proc_rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None


def rss_growth(samples: list[dict[str, object]], seconds: float, window: float = 60.0) -> dict[str, dict[str, float]]:
    """Per process: mean RSS (MB) of the first and the last `window` s, and the growth in %."""
    growth = {}
    names = sorted({name for sample in samples for name in sample["rss_mb"]})  # type: ignore[attr-defined]
    for name in names:
        series = [(s["t"], s["rss_mb"][name]) for s in samples if name in s["rss_mb"]]  # type: ignore[index, operator]
        first = [v for t, v in series if t < window]
        last = [v for t, v in series if t >= seconds - window]
        if not first or not last:
            continue
        a, b = float(np.mean(first)), float(np.mean(last))
        growth[name] = {"first_min_mb": round(a, 1), "last_min_mb": round(b, 1), "growth_pct": round(100 * (b - a) / a, 2)}
    return growth


# ---------------------------------------------------------------- change gating: clips replayed on and off (issue 16)


def replay_clip(settings: Settings, clip: Path, gated: bool, step: int = 1, limit: int | None = None) -> dict[str, Any]:
    """Every `step`-th frame of a clip, in order, through the change gate (on or off), the detector, the
    tracker's plan and OCR, in this process; the consolidated track texts and what the gate did.

    Deterministic where the daemon is not (no frame is skipped for being late), so gating on and off see
    the same frames and their consolidated texts can be compared exactly. Frame times are the clip's
    (seq / fps), so `full_detect_s`, `refresh_s` and `max_age_s` run on the clip's clock.
    """
    import cv2

    from textwatch.capture import Frame
    from textwatch.detect.gate import GatedDetector, GateFrame
    from textwatch.detect.geometry import crop
    from textwatch.detect.runtime import make_detector
    from textwatch.tracking.consolidate import Consolidator
    from textwatch.tracking.plan import RegionPlanner

    base = settings.cameras[0]
    camera = base.model_copy(update={"id": "replay", "gate": base.gate.model_copy(update={"enabled": gated})})
    run = settings.model_copy(update={"cameras": [camera], "tracking": settings.tracking.model_copy(update={"enabled": True})})
    detector = GatedDetector(make_detector(run.detector), {camera.id: camera.gate})
    planner, consolidator = RegionPlanner(run), Consolidator(run.consolidation, camera.filters)
    recognizer = make_recognizer(run.ocr, camera.ocr_engine)
    capture = cv2.VideoCapture(str(clip))
    if not capture.isOpened():
        raise TextwatchError(f"bench gate: cannot open {clip}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    latest: dict[int, str] = {}
    frames, reads, detect_s = 0, 0, 0.0
    try:
        for seq in range(limit if limit is not None else 1 << 30):
            ok, image = capture.read()
            if not ok:
                break
            if seq % step:
                continue
            frame = Frame(camera.id, seq, seq / fps, image)
            start = time.perf_counter()
            detections = detector.detect_batch([GateFrame(camera.id, frame.ts, image)])[0]
            detect_s += time.perf_counter() - start
            frames += 1
            for detection, track in planner.plan(frame, detections).reads:
                reads += 1
                reading = recognizer.read(crop(image, detection.box), detection.line_height, camera.filters.charset)
                change = consolidator.add(track, reading.text, reading.confidence, frame.ts) if reading.status == "text" else None
                if change is not None and track is not None:
                    latest[track] = change.text or ""
    finally:
        capture.release()
        recognizer.close()
    return {
        "clip": clip.name,
        "gating": gated,
        "frames": frames,
        "ocr_reads": reads,
        "detect_ms_per_frame": round(1000 * detect_s / max(1, frames), 1),
        "gate": detector.counters.as_dict(),
        "consolidated_text": sorted(text for text in latest.values() if text),
    }


def default_clips() -> list[Path]:
    """The bundled sample and, where ../shared is present, the real clips of ../shared/eval/videos."""
    root = Path(__file__).resolve().parents[3]
    shared = sorted((root.parent / "shared" / "eval" / "videos").glob("*.*"))
    return [Path(__file__).parents[1] / "data" / "sample.mp4"] + [p for p in shared if p.suffix in (".mp4", ".avi")]


def bench_gate(settings: Settings, clips: list[Path], step: int = 1) -> dict[str, object]:
    """Each clip replayed with gating on and off: detector time per frame and whether the texts agree."""
    rows = []
    for clip in clips:
        on, off = replay_clip(settings, clip, True, step), replay_clip(settings, clip, False, step)
        only_on = sorted(set(on["consolidated_text"]) - set(off["consolidated_text"]))
        only_off = sorted(set(off["consolidated_text"]) - set(on["consolidated_text"]))
        rows.append({
            "clip": clip.name,
            "frames": on["frames"],
            "detect_ms_per_frame_on": on["detect_ms_per_frame"],
            "detect_ms_per_frame_off": off["detect_ms_per_frame"],
            "detect_time_ratio_off_to_on": round(off["detect_ms_per_frame"] / max(0.01, on["detect_ms_per_frame"]), 1),
            "gate": on["gate"],
            "same_consolidated_text": on["consolidated_text"] == off["consolidated_text"],
            "texts": len(off["consolidated_text"]),
            "only_with_gating": only_on,
            "only_without_gating": only_off,
        })
    return {"benchmark": "gate", "clips": rows, "machine": machine()}
