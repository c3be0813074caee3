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


# issue 22's configs that `check` must refuse (bus endpoints, ports in use, URL schemes and
# their secrets, video files, keys, NaN weights, ...) are one table in test_check_cli.py.


@pytest.mark.parametrize(("text", "expected"), [
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "too deeply"),
    ('[detector]\ncfg = "~nosuchuser-textwatch/x.cfg"\n', "cannot be used"),
])
def test_a_config_the_loader_could_not_read_exits_78_with_one_line(write_config, text: str, expected: str) -> None:
    """Regression (issue 22, found again by tests/unit/test_fuzz_config.py): a 5,000-deep TOML array made
    `check` exit 70 "internal error" (RecursionError); a path under an unknown user's home raised RuntimeError."""
    result = run_cli("check", "-c", str(write_config(text)))
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert result.stderr.count("\n") == 1 and expected in result.stderr and "Traceback" not in result.stderr
