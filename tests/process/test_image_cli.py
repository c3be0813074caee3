"""`textwatch image` end to end in a subprocess: real model files, real Tesseract, bad inputs."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from support.cli import run_cli
from support.models import SHIPPED_CFG, needs_shipped_model
from support.paths import shared_path
from textwatch.errors import ExitCode
from textwatch.tools.samples import document_window


@pytest.fixture
def random_config(tiny_model, write_config) -> Path:
    """A config on the random-weights tiny model: boxes are meaningless but the path is real.
    At confidence 0.27 the seeded model gives about 180 boxes on the sample (at 0.2, 1,200: half
    a minute of Tesseract per test for nothing); what is tested is the CLI."""
    cfg, weights = tiny_model
    return write_config(f'[ocr]\nengine = "tesserocr"\n[detector]\ncfg = "{cfg}"\nweights = "{weights}"\nconfidence = 0.27\n')


@pytest.fixture
def sample(tmp_path) -> Path:
    path = tmp_path / "sample.png"
    cv2.imwrite(str(path), document_window()[0])
    return path


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (a decompression-bomb shape) with no real data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_runs_end_to_end_with_json_and_annotation(random_config, sample, tmp_path) -> None:
    annotated = tmp_path / "out" / "a.png"
    result = run_cli("image", "-c", str(random_config), "--json", "--annotate", str(annotated), str(sample))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows, "a random model at confidence 0.01 still yields boxes"
    assert set(rows[0]) >= {"image", "box", "confidence", "status", "text", "ocr_confidence"}
    assert cv2.imread(str(annotated)).shape == (720, 1280, 3)


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (lambda p: None, ExitCode.NO_INPUT, "no such file"),
        (lambda p: p.write_bytes(b""), ExitCode.DATA, "empty file"),
        (lambda p: p.write_text("hello, I am text"), ExitCode.DATA, "not an image file"),
        (lambda p: png_header_only(p, 100_000, 100_000), ExitCode.DATA, "exceeds image.max_pixels"),
        (lambda p: p.write_bytes(cv2.imencode(".png", np.zeros((50, 50, 3), np.uint8))[1].tobytes()[:60]), ExitCode.DATA, "not an image"),
    ],
    ids=["missing", "empty", "text", "huge", "truncated"],
)
def test_bad_image_is_one_line_and_an_exit_code(random_config, tmp_path, make, code, message) -> None:
    bad = tmp_path / "bad.png"
    make(bad)
    result = run_cli("image", "-c", str(random_config), str(bad))
    assert result.returncode == code, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_one_bad_file_does_not_stop_the_others(random_config, sample, tmp_path) -> None:
    (tmp_path / "broken.jpg").write_text("not a jpeg")
    out = tmp_path / "lines.txt"
    result = run_cli("image", "-c", str(random_config), "-o", str(out), str(tmp_path / "broken.jpg"), str(sample))
    assert result.returncode == ExitCode.DATA
    assert "1 of 2 images failed" in result.stderr
    assert f"# {sample}" in out.read_text()


def test_a_directory_is_expanded(random_config, sample, tmp_path) -> None:
    cv2.imwrite(str(tmp_path / "second.jpg"), document_window(640, 480)[0])
    result = run_cli("image", "-c", str(random_config), str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("# ") == 2


def test_truncated_weights_exit_78_naming_sizes(tiny_model, write_config, sample, tmp_path) -> None:
    cfg, weights = tiny_model
    short = tmp_path / "short.weights"
    short.write_bytes(weights.read_bytes()[:-4096])
    config = write_config(f'[detector]\ncfg = "{cfg}"\nweights = "{short}"\n')
    for command in (["image", "-c", str(config), str(sample)], ["check", "-c", str(config)]):
        result = run_cli(*command)
        assert result.returncode == ExitCode.CONFIG
        assert f"is {short.stat().st_size} bytes but tiny.cfg needs {weights.stat().st_size}" in result.stderr


def test_cuda_on_a_cpu_build_exits_69(random_config, write_config, sample) -> None:
    import cv2 as cv

    if cv.cuda.getCudaEnabledDeviceCount() > 0:
        pytest.skip("this OpenCV has CUDA")
    text = random_config.read_text() + 'backend = "cuda-fp16"\n'
    result = run_cli("image", "-c", str(write_config(text, "cuda.toml")), str(sample))
    assert result.returncode == ExitCode.UNAVAILABLE
    assert "no CUDA device" in result.stderr and result.stderr.count("\n") == 1


def test_check_reports_every_problem(write_config, tmp_path) -> None:
    config = write_config(
        f'[detector]\ncfg = "{tmp_path}/none.cfg"\nbackend = "cuda"\n[ocr]\nengine = "tesserocr"\nlanguages = "klingon"\n'
    )
    result = run_cli("check", "-c", str(config))
    lines = result.stderr.splitlines()
    assert result.returncode == ExitCode.CONFIG
    assert len(lines) == (3 if cv2.cuda.getCudaEnabledDeviceCount() == 0 else 2), lines
    assert any("model cfg not found" in line for line in lines)
    assert any("language data missing for klingon" in line for line in lines)


def test_check_passes_on_a_good_config(random_config) -> None:
    result = run_cli("check", "-c", str(random_config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "textwatch check: ok"


def test_bench_ocr_prints_both_engines() -> None:
    result = run_cli("bench", "ocr", "--crops", "3", "--rounds", "1")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tesserocr_crops_per_s"] > 0 and report["pytesseract_crops_per_s"] > 0
    assert report["tesserocr_exact"] == 3 and report["pytesseract_exact"] == 3


def test_shipped_model_reads_the_sample(sample) -> None:
    """The trained detector in backup/ on the project's own rendered window."""
    needs_shipped_model()
    result = run_cli("image", str(sample))
    assert result.returncode == 0, result.stderr
    # "Quarterly ..." pins a bug: a tile that cut the line won NMS over the whole-frame box ("rly sales")
    for expected in ("Sample Text", "Align Text", "Total amount EUR 318.40", "Quarterly sales rose 12 percent"):
        assert expected in result.stdout.splitlines()


def test_shipped_model_reads_the_seed_image(tmp_path) -> None:
    """The seed's bar: "Sample Text" four times and "Align Text" (shared/seed/text_detected.txt)."""
    needs_shipped_model()
    image = shared_path("seed", "TestingImage.jpg")
    out = tmp_path / "out.txt"
    result = run_cli("image", str(image), "-o", str(out))
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert sum("Sample Text" in line for line in lines) >= 4, lines
    assert any("Align Text" in line for line in lines), lines


def test_shipped_cfg_matches_runtime_expectations() -> None:
    if not SHIPPED_CFG.exists():
        pytest.skip("backup/textwatch-tiny.cfg not written yet (issue 3)")
    from textwatch.detect.darknet import parse_cfg

    assert len(parse_cfg(SHIPPED_CFG).heads()) >= 2


def test_bench_detector_reports_every_available_backend(tiny_model, write_config) -> None:
    cfg, weights = tiny_model
    config = write_config(f'[detector]\ncfg = "{cfg}"\nweights = "{weights}"\n')
    result = run_cli("bench", "detector", "-c", str(config), "--batch", "1", "2", "--seconds", "0.2")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    backends = {row["backend"] for row in report["results"]}
    assert "cpu" in backends and {row["batch"] for row in report["results"]} == {1, 2}
    assert all(row["frames_per_s"] > 0 for row in report["results"])


def test_a_fifo_is_refused_not_waited_on(tmp_path) -> None:
    """Regression: a FIFO named x.png made `textwatch image` block for ever opening it."""
    import os

    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    result = run_cli("image", str(fifo), timeout=60)
    assert result.returncode == ExitCode.DATA
    assert result.stderr.strip().endswith("x.png: not a regular file") and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("option", "target", "message"),
    [
        ("-o", "afile.txt/out.txt", "cannot write"),  # its folder is a regular file
        ("--annotate", "afile.txt/a.png", "cannot make the folder"),
    ],
    ids=["o-under-a-file", "annotate-under-a-file"],
)
def test_an_output_that_cannot_be_written_is_one_line_and_exit_73(random_config, tmp_path, option, target, message) -> None:
    """Regression (issue 22): an unwritable -o file exited 70 "internal error" with a traceback.
    (Tests run as root, for whom permissions do not stop a write: a regular file as the folder does.)"""
    (tmp_path / "afile.txt").write_text("a regular file\n")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((64, 64, 3), 255, np.uint8))
    result = run_cli("image", "-c", str(random_config), option, str(tmp_path / target), str(blank))
    assert result.returncode == ExitCode.CANT_CREATE, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
