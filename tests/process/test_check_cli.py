"""`textwatch check` on every bad config of issue 22: exit 78 and one line naming the problem,
never a password.

Regression (issue 22): `check` said ok to configs that `run` could not start or run well (a
publish port in use, pool PORT+1 on the publish port, metrics on the publish port,
tcp://127.0.0.1:99999, an unusable runtime folder, one unparsable allow-list key, ftp:// and
rtsp:/ typos, a text file or a broken MP4 as video, `cameras = []`, NaN weights), a 5,000-deep
array exited 70 "internal error", metrics beyond loopback were accepted without a word, and
mistyped URLs were printed with their password. Each row below starts from a config that
passes `check` (support.daemon.daemon_config) and breaks one thing. The `textwatch check`
subprocesses run a few at a time from one fixture, so the table costs about one check per core.
"""

from __future__ import annotations

import socket
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from support.cli import run_cli
from support.clips import write_line_clip
from support.daemon import daemon_config
from support.ports import free_port
from textwatch.errors import ExitCode

SECRET = "S3cr3t-pw"
PARALLEL = 4


def with_bus(extra: str, drop_publish: bool = False) -> Callable[[Path, Path], Path]:
    """A config whose [bus] gets `extra` lines (and loses its publish line when `extra` sets one)."""

    def make(folder: Path, clip: Path) -> Path:
        config = daemon_config(folder, str(clip))
        lines = [line for line in config.read_text().splitlines() if not (drop_publish and line.startswith("publish ="))]
        config.write_text("\n".join(lines).replace("[bus]", "[bus]\n" + extra, 1) + "\n")
        return config

    return make


def with_url(url: str) -> Callable[[Path, Path], Path]:
    return lambda folder, clip: daemon_config(folder, url)


def replacing(old: str, new: str) -> Callable[[Path, Path], Path]:
    def make(folder: Path, clip: Path) -> Path:
        config = daemon_config(folder, str(clip))
        text = config.read_text()
        assert old in text
        config.write_text(text.replace(old, new, 1))
        return config

    return make


def metrics_on_publish_port(folder: Path, clip: Path) -> Path:
    port = free_port()
    config = daemon_config(folder, str(clip), metrics_port=port)
    lines = [f'publish = "tcp://127.0.0.1:{port}"' if line.startswith("publish =") else line
             for line in config.read_text().splitlines()]
    config.write_text("\n".join(lines) + "\n")
    return config


def runtime_dir_under_a_file(folder: Path, clip: Path) -> Path:
    (folder / "afile").write_text("a regular file, not a folder\n")
    return replacing(f'runtime_dir = "{folder / "run"}"', f'runtime_dir = "{folder / "afile" / "run"}"')(folder, clip)


def unparsable_allowed_key(folder: Path, clip: Path) -> Path:
    from textwatch.tools.keys import generate

    allowed = folder / "keys" / "allowed"
    allowed.mkdir(parents=True)
    _, secret = generate(folder / "keys", "server")
    (allowed / "broken.key").write_text("this is not a key\n")
    return with_bus(f'curve_secret_key = "{secret}"\ncurve_allowed_keys = "{allowed}"')(folder, clip)


def text_file_as_video(folder: Path, clip: Path) -> Path:
    fake = folder / "fake.mp4"
    fake.write_text("not a video\n")
    return daemon_config(folder, str(fake))


def broken_mp4(folder: Path, clip: Path) -> Path:
    broken = folder / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:2048])  # a real MP4's first 2 KB: header, no frame data
    return daemon_config(folder, str(broken))


def no_cameras(folder: Path, clip: Path) -> Path:
    config = daemon_config(folder, str(clip))
    text = config.read_text()
    head, _, rest = text.partition("[[cameras]]")
    config.write_text("cameras = []\n" + head + rest[rest.index("[pipeline]"):])
    return config


def nan_weights(folder: Path, clip: Path) -> Path:
    config = daemon_config(folder, str(clip))
    weights = Path(tomllib.loads(config.read_text())["detector"]["weights"])
    data = bytearray(weights.read_bytes())
    data[-4:] = np.float32("nan").tobytes()
    weights.write_bytes(bytes(data))
    return config


def deep_array(folder: Path, clip: Path) -> Path:
    config = daemon_config(folder, str(clip))
    config.write_text(config.read_text() + "\n[extra]\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    return config


@dataclass(frozen=True)
class BadConfig:
    id: str
    what: str  # the row of the docs' table
    make: Callable[[Path, Path], Path]
    expected: str  # in the one stderr line
    secret: str | None = None  # never in stderr


BAD_CONFIGS = [
    BadConfig("publish-port-in-use", "bus.publish on a port another process listens on", lambda f, c: daemon_config(f, str(c)),
              "cannot bind bus.publish port"),
    BadConfig("pool-results-on-publish", 'bus.pool "tcp://127.0.0.1:6000", bus.publish "tcp://127.0.0.1:6001"',
              with_bus('publish = "tcp://127.0.0.1:6001"\npool = "tcp://127.0.0.1:6000"', drop_publish=True),
              "uses a port of bus.pool"),
    BadConfig("metrics-on-publish-port", "metrics.listen on the port of bus.publish", metrics_on_publish_port,
              "uses the port of bus.publish"),
    BadConfig("port-99999", 'bus.publish "tcp://127.0.0.1:99999"',
              with_bus('publish = "tcp://127.0.0.1:99999"', drop_publish=True), "port 99999 is outside 0..65535"),
    BadConfig("pool-port-65535", 'bus.pool "tcp://127.0.0.1:65535" (results would go to 65536)',
              with_bus('pool = "tcp://127.0.0.1:65535"'), "PORT+1, which must be at most 65535"),
    BadConfig("pool-without-curve", "bus.pool on loopback without CURVE keys or bus.pool_plaintext_loopback",
              with_bus('pool = "tcp://127.0.0.1:6010"'), "without CURVE: set bus.curve_secret_key"),
    BadConfig("udp-publish", 'bus.publish "udp://127.0.0.1:5"',
              with_bus('publish = "udp://127.0.0.1:5"', drop_publish=True), "is not tcp://HOST:PORT"),
    BadConfig("runtime-dir-unusable", "bus.runtime_dir under a regular file", runtime_dir_under_a_file,
              "is not a writable folder"),
    BadConfig("allowed-key-unparsable", "one unparsable .key in bus.curve_allowed_keys", unparsable_allowed_key, "broken.key"),
    BadConfig("ftp-url", f'camera url "ftp://admin:{SECRET}@cam.example/live"',
              with_url(f"ftp://admin:{SECRET}@cam.example/live"), "unknown scheme ftp://", SECRET),
    BadConfig("rtsp-one-slash", f'camera url "rtsp:/admin:{SECRET}@cam.example/live"',
              with_url(f"rtsp:/admin:{SECRET}@cam.example/live"), "malformed, write rtsp://HOST/...", SECRET),
    BadConfig("rtsp-no-colon", f'camera url "rtsp//admin:{SECRET}@cam.example/live"',
              with_url(f"rtsp//admin:{SECRET}@cam.example/live"), "malformed, write rtsp://HOST/...", SECRET),
    BadConfig("password-with-at", 'camera url "ftp://admin:PW1@PW2x@cam.example/live" (a password holding "@")',
              with_url("ftp://admin:PW1@PW2x@cam.example/live"), "ftp://***@cam.example/live", "PW2x"),
    BadConfig("query-password", f'camera url "htp://cam.example/snap.cgi?user=admin&pwd={SECRET}"',
              with_url(f"htp://cam.example/snap.cgi?user=admin&pwd={SECRET}"), "pwd=***", SECRET),
    BadConfig("text-file-as-video", "a text file named fake.mp4 as the camera", text_file_as_video,
              "camera video file has no frame OpenCV can decode: cam1"),
    BadConfig("broken-mp4", "the first 2 KB of a real MP4 as the camera", broken_mp4,
              "camera video file has no frame OpenCV can decode: cam1"),
    BadConfig("no-cameras", "cameras = []", no_cameras, "'cameras': List should have at least 1 item"),
    BadConfig("nan-weights", "detector weights with a valid header and one NaN", nan_weights, "parameters are NaN or infinite"),
    BadConfig("metrics-beyond-loopback", 'metrics.listen "0.0.0.0:9108" without metrics.allow_remote',
              replacing("[metrics]\nenabled = false", '[metrics]\nenabled = false\nlisten = "0.0.0.0:9108"'),
              "beyond loopback: metrics have no authentication"),
    BadConfig("deep-array", "a 5,000-deep TOML array", deep_array, "nests arrays or tables too deeply"),
]


@dataclass
class Checked:
    config: Path
    result: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Checked]]:
    """`textwatch check` on every bad config, PARALLEL at a time; the publish port held meanwhile."""
    clip = write_line_clip(tmp_path_factory.mktemp("clip") / "line.mp4", ["CHECK 22"], frames_each=5)
    configs = {bad.id: bad.make(tmp_path_factory.mktemp(bad.id), clip) for bad in BAD_CONFIGS}
    publish = tomllib.loads(configs["publish-port-in-use"].read_text())["bus"]["publish"]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", int(publish.rsplit(":", 1)[1])))
        holder.listen()
        with ThreadPoolExecutor(PARALLEL) as pool:
            results = dict(zip(configs, pool.map(lambda path: run_cli("check", "-c", str(path)), configs.values())))
    yield {key: Checked(configs[key], results[key]) for key in configs}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("bad", BAD_CONFIGS, ids=[bad.id for bad in BAD_CONFIGS])
def test_check_refuses_with_exit_78_and_one_line(checked: dict[str, Checked], bad: BadConfig) -> None:
    result = checked[bad.id].result
    stderr = result.stderr
    assert result.returncode == ExitCode.CONFIG, stderr
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr
    assert stderr.startswith("textwatch check: ") and bad.expected in stderr, stderr
    assert "Traceback" not in stderr
    if bad.secret is not None:
        assert bad.secret not in stderr and bad.secret not in result.stdout


def test_the_table_for_the_docs(checked: dict[str, Checked]) -> None:
    """Prints the markdown table of docs/operations.md, "What was tested" (run with -s)."""
    rows = ["| bad config | `textwatch check` says (exit 78) |", "|---|---|"]
    for bad in BAD_CONFIGS:
        line = checked[bad.id].result.stderr.strip().replace(str(checked[bad.id].config.parent), "DIR")
        rows.append(f"| {bad.what.replace('|', '&#124;')} | `{line}` |")
    print("\n" + "\n".join(rows))
    assert len(rows) == len(BAD_CONFIGS) + 2
