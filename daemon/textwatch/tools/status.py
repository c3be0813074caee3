"""`textwatch status`: a health summary from a running daemon's metrics endpoint.

Fetches the Prometheus text exposition (metrics.Exporter in the publisher),
prints per camera up/down and frame counters, per process memory, an OCR
latency p50/p95 estimate from the histogram and the crops dropped.

Exit codes: 0 every camera is up, 1 a camera is down (or has not reported:
with -c, every configured camera is expected), 69 the endpoint can not be
reached or does not serve textwatch metrics (one line on stderr).
"""

from __future__ import annotations

import argparse
import math
import sys
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from textwatch.config import load_settings, split_listen
from textwatch.errors import ExitCode

DEFAULT_URL = "http://127.0.0.1:9108/metrics"
TIMEOUT_S = 3.0
PREFIX = "textwatch_"
ANY_HOST = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # a wildcard bind is reached on loopback

Samples = dict[str, list[tuple[dict[str, str], float]]]  # sample name (prefix removed) -> (labels, value)


class Unreachable(Exception):
    """The endpoint did not answer with textwatch metrics; str() is the one-line reason."""


@dataclass
class Summary:
    cameras: dict[str, dict[str, float]] = field(default_factory=dict)  # camera -> field -> value
    memory: dict[str, float] = field(default_factory=dict)  # process -> bytes
    starts: dict[str, float] = field(default_factory=dict)  # process -> starts seen
    dropped: dict[str, float] = field(default_factory=dict)  # reason -> count
    latency: dict[float, float | None] = field(default_factory=dict)  # quantile -> seconds
    results: float = 0.0
    regions_missing: float = 0.0  # regions of published frames never read
    frames_lost: float = 0.0  # frames none of whose regions was read

    def down(self, expected: set[str]) -> list[str]:
        """Cameras not up: reported down, or expected and never reported."""
        missing = expected - set(self.cameras)
        return sorted(missing | {c for c, f in self.cameras.items() if f.get("source_up") != 1})


def url_from_listen(listen: str) -> str:
    host, port = split_listen(listen)
    host = ANY_HOST.get(host, host)
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


def fetch(url: str, timeout_s: float = TIMEOUT_S) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - the user's URL
            return response.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        raise Unreachable(f"{url} answered HTTP {err.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise Unreachable(f"cannot reach {url}: {reason}") from None
    except UnicodeDecodeError:
        raise Unreachable(f"{url} did not answer UTF-8 text") from None


def parse(text: str) -> Samples:
    """The textwatch_* samples of a text exposition, by sample name without the prefix."""
    samples: Samples = defaultdict(list)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith(PREFIX):
                    samples[sample.name[len(PREFIX) :]].append((dict(sample.labels), sample.value))
    except ValueError as err:
        raise Unreachable(f"not a Prometheus text exposition: {err}") from None
    return samples


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Estimate from cumulative (le, count) buckets, interpolating linearly as Prometheus does.

    None without observations; the highest finite bound when the quantile falls in +Inf.
    """
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


CAMERA_FIELDS = {
    "source_up": "source_up",
    "frames_read_total": "read",
    "frames_processed_total": "processed",
    "frames_skipped_total": "skipped",
    "reconnects_total": "reconnects",
    "crops_in_flight": "in_flight",
}


def summarize(samples: Samples) -> Summary:
    summary = Summary()
    for name, key in CAMERA_FIELDS.items():
        for labels, value in samples.get(name, []):
            summary.cameras.setdefault(labels.get("camera", "?"), {})[key] = value
    for labels, value in samples.get("process_resident_memory_bytes", []):
        summary.memory[labels.get("process", "?")] = value
    for labels, value in samples.get("process_starts_total", []):
        summary.starts[labels.get("process", "?")] = value
    for labels, value in samples.get("crops_dropped_total", []):
        reason = labels.get("reason", "?")
        summary.dropped[reason] = summary.dropped.get(reason, 0.0) + value
    summary.regions_missing = sum(value for _, value in samples.get("regions_missing_total", []))
    summary.frames_lost = sum(
        value for labels, value in samples.get("frames_published_total", []) if labels.get("outcome") == "lost"
    )
    merged: dict[float, float] = defaultdict(float)  # every camera's histogram together
    for labels, value in samples.get("ocr_latency_seconds_bucket", []):
        merged[float(labels["le"])] += value
    summary.results = sum(value for _, value in samples.get("ocr_latency_seconds_count", []))
    summary.latency = {q: quantile(q, list(merged.items())) for q in (0.5, 0.95)}
    return summary


def render(summary: Summary, url: str, expected: set[str]) -> str:
    down = set(summary.down(expected))
    lines = [f"textwatch status: {url}", "cameras:"]
    for camera in sorted(set(summary.cameras) | expected):
        f = summary.cameras.get(camera, {})
        state = "up" if camera not in down else ("down" if "source_up" in f else "not reported")
        counts = "  ".join(
            f"{label} {int(f[key])}" for key, label in [
                ("read", "read"), ("processed", "processed"), ("skipped", "skipped"),
                ("reconnects", "reconnects"), ("in_flight", "crops in flight"),
            ] if key in f
        )
        lines.append(f"  {camera:<16} {state:<12} {counts}".rstrip())
    if not summary.cameras and not expected:
        lines.append("  (none reported yet)")
    lines.append("processes:")
    for process in sorted(set(summary.memory) | set(summary.starts)):
        memory = f"rss {summary.memory[process] / 2**20:.1f} MiB" if process in summary.memory else "rss ?"
        starts = int(summary.starts.get(process, 0))
        lines.append(f"  {process:<16} {memory}" + (f"  restarts {starts - 1}" if starts > 1 else ""))
    p50, p95 = summary.latency.get(0.5), summary.latency.get(0.95)
    if p50 is None or p95 is None:
        lines.append("ocr latency: no results yet")
    else:
        lines.append(f"ocr latency: p50 {p50 * 1000:.0f} ms  p95 {p95 * 1000:.0f} ms  ({int(summary.results)} results)")
    dropped = "  ".join(f"{reason} {int(n)}" for reason, n in sorted(summary.dropped.items())) or "none"
    lines.append(f"crops dropped: {dropped}")
    lines.append(f"regions never read: {int(summary.regions_missing)} ({int(summary.frames_lost)} frames lost)")
    return "\n".join(lines)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help=f"metrics endpoint (default: from the config's metrics.listen, else {DEFAULT_URL})"
    )
    parser.add_argument("-c", "--config", help="config file: its metrics.listen and the cameras to expect")


def run_status(args: argparse.Namespace) -> int:
    """Print the summary; 0 all cameras up, 1 any down, 69 endpoint unreachable."""
    expected: set[str] = set()
    url = args.url
    if args.config:
        settings = load_settings(args.config)
        expected = {camera.id for camera in settings.cameras}
        url = url or url_from_listen(settings.metrics.listen)
    url = url or DEFAULT_URL
    try:
        samples = parse(fetch(url))
        if not samples:
            raise Unreachable(f"{url} serves no textwatch metrics")
    except Unreachable as err:
        print(f"textwatch status: {err}", file=sys.stderr)
        return int(ExitCode.UNAVAILABLE)
    summary = summarize(samples)
    print(render(summary, url, expected))
    healthy = summary.cameras or expected  # no camera at all is not "all up"
    return int(ExitCode.OK) if healthy and not summary.down(expected) else int(ExitCode.PARTIAL)


def main(argv: list[str] | None = None) -> int:
    """`python -m textwatch.tools.status`, until the `textwatch status` subcommand is wired in cli.py."""
    from textwatch.errors import TextwatchError

    parser = argparse.ArgumentParser(prog="textwatch status", description=__doc__.splitlines()[0])
    add_status_arguments(parser)
    try:
        return run_status(parser.parse_args(argv))
    except TextwatchError as err:
        print(f"textwatch status: {err}", file=sys.stderr)
        return int(err.exit_code)


if __name__ == "__main__":
    sys.exit(main())
