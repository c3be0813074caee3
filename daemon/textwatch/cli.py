"""The `textwatch` command line.

Every subcommand returns an exit code (errors.ExitCode). A `TextwatchError`
becomes one line on stderr and its code; anything else is a bug and exits 70
after logging the traceback, so a user never sees a raw traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from textwatch import __version__
from textwatch.errors import ExitCode, InputMissing, TextwatchError

# textwatch.config (pydantic, ~0.4 s) and textwatch.log (structlog, ~0.1 s) are imported where used,
# after `run`'s signal handlers are in place (EarlySignals in main).
if TYPE_CHECKING:
    from textwatch.config import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textwatch", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"textwatch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    image = sub.add_parser("image", help="read the text in image files (the one-shot path)")
    image.add_argument("paths", nargs="+", type=Path, help="image files or directories of images")
    image.add_argument("-c", "--config", type=Path, help="config file (default: built-in defaults)")
    image.add_argument("-o", "--output", type=Path, help="write the text lines to this file instead of stdout")
    image.add_argument("--json", action="store_true", help="print one JSON object per region")
    image.add_argument("--annotate", type=Path, help="draw boxes and text into this PNG (a folder for several images)")
    image.set_defaults(handler=cmd_image)

    check = sub.add_parser("check", help="validate the config and everything it points at")
    check.add_argument("-c", "--config", type=Path, help="config file (default: built-in defaults)")
    check.set_defaults(handler=cmd_check)

    bench = sub.add_parser("bench", help="measure speed; prints numbers")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="WHAT")
    ocr = bench_sub.add_parser("ocr", help="tesserocr against pytesseract on the same line crops")
    ocr.add_argument("-c", "--config", type=Path)
    ocr.add_argument("--crops", type=int, default=40, help="number of distinct line crops")
    ocr.add_argument("--rounds", type=int, default=3, help="passes of tesserocr over the crops")
    ocr.set_defaults(handler=cmd_bench_ocr)
    pipe = bench_sub.add_parser("pipeline", help="the daemon on the 1280x720 sample video, measured by a subscriber")
    pipe.add_argument("-c", "--config", type=Path)
    pipe.add_argument("--seconds", type=float, default=30.0, help="measured duration after warm-up")
    pipe.add_argument("--fps", type=float, default=10.0, help="frames/s cap of the camera")
    pipe.add_argument("--fast", action="store_true", help="read the file as fast as possible instead of in real time")
    pipe.add_argument("--scene", choices=["sample", "static", "moving"], default="sample",
                      help="the bundled sample clip, or a rendered 1280x720 window standing still or drifting")
    pipe.add_argument("--scheduling", choices=["on", "off", "both"], default="on",
                      help="OCR only of new, changed or due tracks (off: every crop, tracking still on); "
                      "both = two runs side by side, their OCR ratio and consolidated text compared")
    pipe.add_argument("--gating", choices=["on", "off", "both"], default="both",
                      help="change-gated detection (cameras.gate) on, off, or both: runs side by side, their "
                      "detector time per frame and consolidated text compared")
    pipe.set_defaults(handler=cmd_bench_pipeline)
    gate = bench_sub.add_parser("gate", help="clips replayed frame by frame with change gating on and off; same texts?")
    gate.add_argument("clips", type=Path, nargs="*", help="video files (default: the bundled sample and ../shared/eval/videos)")
    gate.add_argument("-c", "--config", type=Path)
    gate.add_argument("--step", type=int, default=1, help="replay every STEP-th frame")
    gate.set_defaults(handler=cmd_bench_gate)
    soak = bench_sub.add_parser("soak", help="the daemon on the looped sample video for minutes; RSS of every process over time")
    soak.add_argument("-c", "--config", type=Path)
    soak.add_argument("--minutes", type=float, default=30.0, help="measured duration after warm-up")
    soak.add_argument("--interval", type=float, default=10.0, help="seconds between two RSS samples")
    soak.add_argument("--warmup", type=float, default=30.0, help="seconds after the first frame before sampling starts")
    soak.add_argument("--fps", type=float, default=10.0, help="frames/s cap of the camera")
    soak.add_argument("--fast", action="store_true", help="read the file as fast as possible instead of in real time")
    soak.set_defaults(handler=cmd_bench_soak)
    det = bench_sub.add_parser("detector", help="detector forward passes per backend and batch size")
    det.add_argument("-c", "--config", type=Path)
    det.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16], help="batch sizes")
    det.add_argument("--seconds", type=float, default=3.0, help="time per backend and batch size")
    det.set_defaults(handler=cmd_bench_detector)
    dets = bench_sub.add_parser("detectors", help="detector.model yolo against ppocr: whole detect() calls on the same images")
    dets.add_argument("-c", "--config", type=Path)
    dets.add_argument("--images", type=Path, nargs="*", default=[], help="folders of images to add to the sample's frames")
    dets.add_argument("--per-folder", type=int, default=10, help="first N images of each folder")
    dets.add_argument("--rounds", type=int, default=3, help="timed detect() calls per image (the median counts)")
    dets.set_defaults(handler=cmd_bench_detectors)

    run = sub.add_parser("run", help="run the streaming daemon (supervisor, detect, OCR workers, publisher)")
    run.add_argument("-c", "--config", type=Path, help="config file (default: config/textwatch.toml's values)")
    run.set_defaults(handler=cmd_run)

    from textwatch.processes.ocr import add_worker_arguments, run_worker_cli
    from textwatch.tools.subscribe import add_subscribe_arguments, run_subscribe

    worker = sub.add_parser("worker", help="a remote OCR worker joining a daemon's bus.pool")
    add_worker_arguments(worker)
    worker.set_defaults(handler=run_worker_cli)
    subscribe = sub.add_parser("subscribe", help="print text results from a running daemon")
    add_subscribe_arguments(subscribe)
    subscribe.set_defaults(handler=run_subscribe)

    from textwatch.tools.status import add_status_arguments, run_status

    status = sub.add_parser("status", help="health summary from a running daemon's metrics endpoint")
    add_status_arguments(status)
    status.set_defaults(handler=run_status)

    from textwatch.processes.mqtt import add_mqtt_arguments, run_mqtt_cli

    mqtt = sub.add_parser("mqtt", help="the MQTT bridge alone: a daemon's texts and state on an MQTT broker")
    add_mqtt_arguments(mqtt)
    mqtt.set_defaults(handler=run_mqtt_cli)

    from textwatch.tools.keys import add_keys_arguments, run_keys

    keys = sub.add_parser("keys", help="CURVE key pairs for a bus bound beyond loopback")
    add_keys_arguments(keys)
    keys.set_defaults(handler=run_keys)

    from textwatch.tools import evaluate

    evaluate.add_arguments(sub.add_parser("eval", help="score accuracy and speed on eval sets (shared/eval)"))
    sub.choices["eval"].set_defaults(handler=evaluate.run)

    _add_view_and_history(sub)
    _add_train(sub)
    from textwatch.train import teacher

    teacher.add_arguments(sub.add_parser("teacher", help="label ../shared/train with PP-OCRv6's detector (training data)"))
    sub.choices["teacher"].set_defaults(handler=teacher.run)
    return parser


def _add_view_and_history(sub: argparse._SubParsersAction) -> None:
    """`textwatch view` (aiohttp, imported only when it runs) and `textwatch history`."""
    from textwatch.tools.history import add_history_arguments, run_history

    view = sub.add_parser("view", help="the web page: live frames, tracks, status and history search")
    view.add_argument("-c", "--config", help="the daemon's config file (default: built-in defaults)")
    view.add_argument("--listen", help="HOST:PORT to serve on (default: view.listen, 127.0.0.1:8088)")
    view.add_argument("--endpoint", help="the daemon's publish endpoint (default: bus.publish of the config)")
    view.set_defaults(handler=_run_view)
    history = sub.add_parser("history", help="search and export the history of texts read")
    add_history_arguments(history)
    history.set_defaults(handler=run_history)


def _run_view(args: argparse.Namespace) -> int:
    from textwatch.view.server import run_view

    return run_view(args)


def _add_train(sub: argparse._SubParsersAction) -> None:
    """`textwatch train` needs torch (the optional extra), imported only when the command runs."""
    from textwatch.train.recipe import add_arguments

    train = sub.add_parser("train", help="train the text detector (needs the torch extra)")
    add_arguments(train)
    train.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    """Regression: the old parser imported torch for every command, and a missing torch
    crashed `textwatch train` with a NameError (the handler's lambda used a deleted name)."""
    try:
        from textwatch.train import trainer
    except ImportError as err:
        return _missing_torch(err)
    return trainer.run(args)


def _missing_torch(err: ImportError) -> int:
    print(f"textwatch: training needs PyTorch ({err}); install with: pip install 'textwatch[torch]'", file=sys.stderr)
    return ExitCode.UNAVAILABLE


def settings_from(args: argparse.Namespace) -> Settings:
    from textwatch.config import load_settings

    return load_settings(getattr(args, "config", None))


def checked_settings(args: argparse.Namespace) -> Settings:
    """Settings that passed every `textwatch check`; the first problem is raised otherwise."""
    from textwatch.tools.check import run_checks

    settings = settings_from(args)
    problems = run_checks(settings)
    if problems:
        raise problems[0]
    return settings


def cmd_image(args: argparse.Namespace) -> int:
    from textwatch.tools.image import run_images

    return run_images(args, settings_from(args))


def cmd_check(args: argparse.Namespace) -> int:
    from textwatch.tools.check import run_checks

    try:
        settings = settings_from(args)
    except TextwatchError as err:
        print(f"textwatch check: {err}", file=sys.stderr)
        return err.exit_code
    problems = run_checks(settings)
    for problem in problems:
        print(f"textwatch check: {problem}", file=sys.stderr)
    if problems:
        return max(p.exit_code for p in problems)
    print("textwatch check: ok")
    return ExitCode.OK


class EarlySignals:
    """`textwatch run`'s signals from its first instant, before the 1-2 s of imports and start-up
    checks: queued, never acted on mid-check. Regression (issue 22): the handlers came only with
    the supervisor, so a SIGHUP during the checks killed the daemon (the docs say it is ignored).

    After the checks, a queued SIGTERM or SIGINT stops `run` with exit 0 before any child starts;
    a SIGHUP is logged as ignored. The queue then goes to the Supervisor, whose handlers replace these."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        for sig in self.SIGNALS:
            signal.signal(sig, lambda signum, _frame: self.queue.put(signum))

    def stop_requested(self) -> str | None:
        """The name of a stop signal received so far (SIGTERM, SIGINT), or None; SIGHUPs are logged and dropped."""
        from textwatch.log import get_logger

        stop = None
        while True:
            try:
                signum = self.queue.get_nowait()
            except queue.Empty:
                return stop
            if signum == signal.SIGHUP:
                get_logger().info("sighup_ignored", hint="restart the service to reload its config")
            else:
                stop = stop or signal.Signals(signum).name


def command_of(argv: list[str]) -> str | None:
    """The subcommand in argv without parsing it (the global options take no value): the first
    word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def cmd_run(args: argparse.Namespace) -> int:
    """Validate everything first (exit 78/69 with one line per problem), then supervise."""
    early = getattr(args, "early_signals", None) or EarlySignals()
    from textwatch.log import get_logger, setup_logging
    from textwatch.tools.check import run_checks
    from textwatch.processes.supervisor import Supervisor

    settings = settings_from(args)
    problems = run_checks(settings)
    for problem in problems:
        print(f"textwatch: {problem}", file=sys.stderr)
    if problems:
        return max(p.exit_code for p in problems)
    setup_logging(["info", "info", "debug"][min(args.verbose, 2)], process="supervisor")
    stop = early.stop_requested()
    if stop is not None:
        get_logger().info("stopped_before_start", reason=stop)
        return ExitCode.OK
    return Supervisor(settings, signals=early.queue).run()


def cmd_bench_ocr(args: argparse.Namespace) -> int:
    from textwatch.tools.bench import bench_ocr

    result = bench_ocr(settings_from(args).ocr, crops=args.crops, rounds=args.rounds)
    print(json.dumps(result, indent=2))
    return ExitCode.OK


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from textwatch.tools.bench import bench_pipeline, compare_gating, compare_runs

    settings = checked_settings(args)
    modes = [True, False] if args.scheduling == "both" else [args.scheduling == "on"]
    gatings = [True, False] if args.gating == "both" else [args.gating == "on"]
    runs = [
        bench_pipeline(
            settings, seconds=args.seconds, fast=args.fast, fps=args.fps, scene=args.scene, scheduling=mode, gating=gating
        )
        for mode in modes
        for gating in gatings
    ]
    result: dict[str, object] = {"runs": runs}
    if len(runs) == 1:
        result = runs[0]
    elif len(gatings) == 2:
        result["gating"] = [compare_gating(runs[i], runs[i + 1]) for i in range(0, len(runs), 2)]
    else:
        result.update(compare_runs(*runs))
    print(json.dumps(result, indent=2))
    return ExitCode.OK


def cmd_bench_gate(args: argparse.Namespace) -> int:
    from textwatch.tools.bench import bench_gate, default_clips

    settings = checked_settings(args)
    clips = args.clips or default_clips()
    for clip in clips:
        if not clip.is_file():
            raise InputMissing(f"bench gate: no such clip: {clip}")
    print(json.dumps(bench_gate(settings, clips, max(1, args.step)), indent=2))
    return ExitCode.OK


def cmd_bench_soak(args: argparse.Namespace) -> int:
    from textwatch.tools.bench import bench_soak

    settings = checked_settings(args)
    result = bench_soak(settings, args.minutes, args.interval, args.fast, args.fps, args.warmup)
    print(json.dumps(result, indent=2))
    return ExitCode.OK


def cmd_bench_detector(args: argparse.Namespace) -> int:
    from textwatch.tools.bench import bench_detector

    result = bench_detector(settings_from(args), batches=args.batch, seconds=args.seconds)
    print(json.dumps(result, indent=2))
    return ExitCode.OK


def cmd_bench_detectors(args: argparse.Namespace) -> int:
    from textwatch.tools.bench import bench_detectors

    print(json.dumps(bench_detectors(settings_from(args), args.images, args.per_folder, args.rounds), indent=2))
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    early = EarlySignals() if command_of(sys.argv[1:] if argv is None else argv) == "run" else None
    from textwatch.log import get_logger, setup_logging

    args = build_parser().parse_args(argv)
    args.early_signals = early
    setup_logging(["warning", "info", "debug"][min(args.verbose, 2)], process="cli")
    try:
        return int(args.handler(args))
    except TextwatchError as err:
        print(f"textwatch: {err}", file=sys.stderr)
        return int(err.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return ExitCode.OK
    except Exception:  # noqa: BLE001 - the last resort: a bug, logged with its traceback
        get_logger().exception("internal_error")
        print("textwatch: internal error (a bug); the log above has the details", file=sys.stderr)
        return int(ExitCode.SOFTWARE)
