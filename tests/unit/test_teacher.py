"""The PP-OCRv6 detector (detector.model = "ppocr") and its use as our detector's teacher.

Pins issue 15's labelling contract on a rendered page with known lines: every
teacher box lies inside the image (normalised, inside [0, 1]: the seed's
drawback 1 was boxes beyond it), holds exactly one text row, and merges with
ground truth by the documented rule (annotations win, do-not-care stays
ignored).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from textwatch.config import load_settings
from textwatch.detect.runtime import make_detector
from textwatch.tools.samples import document_window
from textwatch.train import teacher
from textwatch.train.realdata import RealImage, RealSettings, load_set, merge_teacher


@pytest.fixture(scope="module")
def detector():
    return make_detector(load_settings(None).detector.model_copy(update={"model": "ppocr"}))


def rows_inside(box: tuple[int, int, int, int], lines) -> list[str]:
    """The rendered lines whose vertical middle lies inside the box."""
    return [line.text for line in lines if box[1] <= (line.box[1] + line.box[3]) / 2 <= box[3]
            and min(box[2], line.box[2]) > max(box[0], line.box[0])]


def test_ppocr_finds_each_line_of_a_rendered_page_once_one_row_per_box(detector) -> None:
    frame, lines = document_window()
    detections = detector.detect(frame)
    h, w = frame.shape[:2]
    for d in detections:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, d.box
        assert len({line.box[1] for line in lines if line.text in rows_inside(d.box, lines)}) <= 1, (d.box, rows_inside(d.box, lines))
    body = [line for line in lines if line.box[1] > 100]
    for line in body:
        holders = [d for d in detections if line.text in rows_inside(d.box, [line])]
        assert holders, f"{line.text!r} not found"
        x1, _, x2, _ = line.box
        assert min(d.box[0] for d in holders) <= x1 + 3 and max(d.box[2] for d in holders) >= x2 - 3, line.text


def test_ppocr_detector_on_an_empty_frame_finds_nothing(detector) -> None:
    assert detector.detect(np.full((300, 500, 3), 200, np.uint8)) == []


def test_teacher_labels_a_set_into_one_jsonl_with_normalised_boxes_inside_the_image(tmp_path: Path) -> None:
    frame, _ = document_window(960, 540)
    folder = tmp_path / "train" / "sroie_receipts"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "page.png"), frame)
    record = {"image": "page.png", "width": 960, "height": 540, "lines": []}
    (folder / "manifest.jsonl").write_text(json.dumps(record) + "\n")
    out = tmp_path / "teacher"
    assert teacher.label_set(tmp_path / "train", "sroie_receipts", out) == 1
    labels = [json.loads(line) for line in (out / "sroie_receipts.jsonl").read_text().splitlines()]
    assert [rec["image"] for rec in labels] == ["page.png"] and not (out / "sroie_receipts.jsonl.partial").exists()
    boxes = np.asarray([b[:4] for b in labels[0]["boxes"]], float)
    assert len(boxes) >= 6
    normalised = boxes / [960, 540, 960, 540]
    assert (normalised >= 0).all() and (normalised <= 1).all()
    merged = load_set(tmp_path / "train", "sroie_receipts", RealSettings(teacher_dir=out))[0]
    assert len(merged.lines) == len(boxes) and len(merged.ignore) == 0, "with no annotations every teacher box is a line"


def image(lines: list[list[float]], ignore: list[list[float]]) -> RealImage:
    return RealImage(Path("x.jpg"), 1000, 1000, np.asarray(lines, np.float32).reshape(-1, 4),
                     np.asarray(ignore, np.float32).reshape(-1, 4))


def test_merge_rule_annotations_win_dont_care_stays_ignored() -> None:
    truth = image([[100, 100, 300, 130]], [[500, 500, 600, 530]])
    merged = merge_teacher(truth, np.asarray([
        [102, 101, 298, 129],   # the annotated line again: dropped
        [100, 300, 400, 330],   # text nobody annotated: a new line
        [490, 495, 610, 535],   # around the do-not-care region: ignored too, never a line
        [250, 100, 450, 130],   # half on an annotation: the two disagree -> ignored
    ], np.float32))
    assert merged.lines.tolist() == [[100, 100, 300, 130], [100, 300, 400, 330]]
    assert merged.ignore.tolist() == [[500, 500, 600, 530], [490, 495, 610, 535], [250, 100, 450, 130]]


def test_missing_teacher_labels_are_an_error_naming_the_command(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "sroie_receipts"
    folder.mkdir(parents=True)
    (folder / "manifest.jsonl").write_text(json.dumps({"image": "a.png", "width": 9, "height": 9, "lines": []}) + "\n")
    with pytest.raises(Exception, match="textwatch teacher"):
        load_set(tmp_path / "train", "sroie_receipts", RealSettings(teacher_dir=tmp_path / "none"))
