"""A bad config at the command line: `textwatch check`, `image` and `run` exit 78 (EX_CONFIG)
with one line on stderr, before any daemon starts. The schema itself is in unit/test_config.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import run_cli
from support.clips import write_line_clip
from support.daemon import daemon_config
from textwatch.errors import ExitCode

TEXT = "TEXTWATCH 42"


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_line_clip(tmp_path / "line.mp4", [TEXT], frames_each=20)


def test_bad_config_exits_78_with_one_line(write_config, tmp_path) -> None:
    path = write_config('[detector]\nconfidense = 0.5\n')
    image = tmp_path / "x.png"
    for args in (["check", "-c", str(path)], ["image", "-c", str(path), str(image)]):
        result = run_cli(*args)
        assert result.returncode == ExitCode.CONFIG, result.stderr
        assert result.stderr.count("\n") == 1 and "unknown key 'detector.confidense'" in result.stderr
        assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path) -> None:
    result = run_cli("check", "-c", str(tmp_path / "nope.toml"))
    assert result.returncode == ExitCode.CONFIG
    assert "config file not found" in result.stderr


def test_config_error_exits_78_with_one_line(tmp_path, clip) -> None:
    config = daemon_config(tmp_path, str(clip))
    config.write_text(config.read_text() + "\n[pipeline.extra]\nworkers = 2\n")
    result = run_cli("run", "-c", str(config))
    assert result.returncode == ExitCode.CONFIG
    assert result.stderr.count("\n") == 1 and "unknown key" in result.stderr


def test_missing_video_file_is_a_config_error(tmp_path) -> None:
    config = daemon_config(tmp_path, str(tmp_path / "nope.mp4"))
    result = run_cli("run", "-c", str(config))
    assert result.returncode == ExitCode.CONFIG
    assert "camera video file not found: cam1" in result.stderr


# --- issue 22: `check` refuses what `run` could not start or would run wrongly -----------------


def check_fails_with(config: Path, expected: str) -> None:
    result = run_cli("check", "-c", str(config))
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('publish = "tcp://127.0.0.1:99999"', "port 99999 is outside 0..65535"),
        ('publish = "tcp://127.0.0.1:6001"\npool = "tcp://127.0.0.1:6000"', "uses a port of bus.pool"),
        ('pool = "tcp://127.0.0.1:65535"', "PORT+1, which must be at most 65535"),
        ('publish = "udp://127.0.0.1:5"', "is not tcp://HOST:PORT"),
    ],
)
def test_bus_endpoints_that_cannot_work_are_refused(tmp_path: Path, clip: Path, extra: str, expected: str) -> None:
    """Regression: these passed check; ZeroMQ bound another port, or the publisher crash-looped."""
    config = daemon_config(tmp_path, str(clip))
    text = config.read_text()
    text = "\n".join(line for line in text.splitlines() if not (line.startswith("publish =") and "publish" in extra))
    config.write_text(text.replace("[bus]", "[bus]\n" + extra, 1))
    check_fails_with(config, expected)


def test_metrics_on_the_publish_port_is_refused(tmp_path: Path, clip: Path) -> None:
    """Regression: the daemon ran without metrics, silently."""
    from support.ports import free_port

    port = free_port()
    config = daemon_config(tmp_path, str(clip), metrics_port=port)
    lines = [f'publish = "tcp://127.0.0.1:{port}"' if line.startswith("publish =") else line
             for line in config.read_text().splitlines()]
    config.write_text("\n".join(lines) + "\n")
    check_fails_with(config, "uses the port of bus.publish")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://user:secret@cam.example/live", "unknown scheme ftp://"),
        ("rtsp:/cam.example/live", "malformed, write rtsp://"),
    ],
)
def test_camera_urls_with_unknown_or_broken_schemes_are_refused(tmp_path: Path, url: str, expected: str) -> None:
    """Regression: taken as file names and retried forever. The password never shows."""
    result = run_cli("check", "-c", str(daemon_config(tmp_path, url)))
    assert result.returncode == ExitCode.CONFIG and expected in result.stderr, result.stderr
    assert "secret" not in result.stderr


def test_a_text_file_as_video_is_refused(tmp_path: Path) -> None:
    """Regression: a text file named .mp4 passed check and was reopened forever."""
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video\n")
    check_fails_with(daemon_config(tmp_path, str(fake)), "no frame OpenCV can decode: cam1")


def test_a_publish_port_in_use_is_refused(tmp_path: Path, clip: Path) -> None:
    """Regression: check said ok; the publisher crash-looped 6 times, then exit 1 with no line naming the port."""
    import socket

    config = daemon_config(tmp_path, str(clip))
    port = int(next(line for line in config.read_text().splitlines() if line.startswith("publish =")).rsplit(":", 1)[1].strip('"'))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        check_fails_with(config, f"bus.publish port {port} on 127.0.0.1")


def test_weights_with_nan_values_are_refused(tmp_path: Path, clip: Path) -> None:
    """Regression: weights with a valid header and NaN values loaded; the daemon detected nothing, silently."""
    import numpy as np

    config = daemon_config(tmp_path, str(clip))
    weights = Path(next(line for line in config.read_text().splitlines() if line.startswith("weights =")).split('"')[1])
    data = bytearray(weights.read_bytes())
    data[-4:] = np.float32("nan").tobytes()
    weights.write_bytes(bytes(data))
    check_fails_with(config, "1 of")


def test_an_unparsable_allowed_key_is_refused(tmp_path: Path, clip: Path) -> None:
    """Regression: one bad .key in the allow-list locked out every client, valid ones too."""
    from textwatch.tools.keys import generate

    keys = tmp_path / "keys"
    allowed = keys / "allowed"
    allowed.mkdir(parents=True)
    _, secret = generate(keys, "server")
    (allowed / "broken.key").write_text("this is not a key\n")
    config = daemon_config(tmp_path, str(clip), extra=f'curve_secret_key = "{secret}"\ncurve_allowed_keys = "{allowed}"')
    check_fails_with(config, "broken.key")


@pytest.mark.parametrize(("text", "expected"), [
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ('[detector]\ncfg = "~nosuchuser-textwatch/x.cfg"\n', "cannot be used"),
])
def test_a_config_the_loader_could_not_read_exits_78_with_one_line(write_config, text: str, expected: str) -> None:
    """Regression (issue 22, found again by tests/unit/test_fuzz_config.py): a 5,000-deep TOML array made
    `check` exit 70 "internal error" (RecursionError); a path under an unknown user's home raised RuntimeError."""
    result = run_cli("check", "-c", str(write_config(text)))
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert result.stderr.count("\n") == 1 and expected in result.stderr and "Traceback" not in result.stderr
