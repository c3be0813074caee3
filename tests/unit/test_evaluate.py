"""`textwatch eval`: the scoring rules of SCORING.md on hand-made cases, and real runs on tiny sets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import pytest

from support.models import SHIPPED_CFG, SHIPPED_WEIGHTS, needs_shipped_model
from support.paths import shared_path
from textwatch.tools import evaluate
from textwatch.errors import ExitCode, InputError, InputMissing
from textwatch.tools.evaluate import (
    DetCount,
    detection_count,
    find_sets,
    plate_key,
    plates_read,
    tokens,
    truth_lines,
    word_count,
)
from textwatch.tools.samples import document_window


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="textwatch eval")
    evaluate.add_arguments(parser)
    return parser.parse_args(list(argv))


# --- tokens and word scores -----------------------------------------------------------------


def test_tokens_are_lowercase_alnum_runs() -> None:
    assert tokens("Invoice #4471, due 2026-12-01!") == ["invoice", "4471", "due", "2026", "12", "01"]
    assert tokens("EUR318.40 Café") == ["eur318", "40", "caf"]
    assert tokens("  ---  ") == []


def test_word_count_is_a_multiset_intersection() -> None:
    """Repeated tokens match only as often as they occur on both sides."""
    count = word_count(["the the the cat"], ["The cat", "the dog"])
    assert (count.matched, count.predicted, count.truth) == (3, 4, 4)
    count = word_count(["a a"], ["a a a"])
    assert (count.matched, count.predicted, count.truth) == (2, 2, 3)


def test_word_count_ignores_line_breaks() -> None:
    assert word_count(["hello", "world"], ["hello world"]).matched == 2


def test_truth_skips_dont_care_and_hashes() -> None:
    record = {
        "image": "x.jpg",
        "lines": [
            {"text": "EXIT", "box": [0, 0, 9, 9], "dont_care": False},
            {"text": "###", "box": [10, 0, 19, 9], "dont_care": False},
            {"text": "blurred", "box": [20, 0, 29, 9], "dont_care": True},
            {"text": "", "box": [30, 0, 39, 9], "dont_care": True},
        ],
        "text": "ignored because lines exist",
    }
    assert truth_lines(record) == ["EXIT"]


def test_truth_falls_back_to_text_split_into_lines() -> None:
    record = {"image": "x.png", "lines": None, "text": "first line\n\nsecond line\n"}
    assert truth_lines(record) == ["first line", "", "second line"]
    assert word_count(["first line second line"], truth_lines(record)).truth == 4


def test_record_without_any_truth_is_an_input_error() -> None:
    with pytest.raises(InputError, match="neither 'lines' nor 'text'"):
        truth_lines({"image": "x.png", "lines": None, "text": None})


def test_set_scores_are_micro_averaged(tmp_path: Path) -> None:
    """Precision over all predicted tokens of the set, not the mean of per-image precisions."""
    result = evaluate.SetResult(evaluate.EvalSet("s", tmp_path, "words", (), 0, 0))
    for output, truth in ((["a b c d"], ["a b c d"]), (["x"], ["a"])):
        sample = evaluate.Sample(tmp_path / "i.png", tuple(truth), None, ())
        result.images.append(evaluate.score_image(sample, output, None, None, 0.1))
    scores = result.scores()
    assert scores["precision"] == pytest.approx(4 / 5)
    assert scores["recall"] == pytest.approx(4 / 5)
    assert scores["f1"] == pytest.approx(0.8)
    assert scores["det_recall"] is None and scores["plate_recall"] is None


def test_nothing_predicted_gives_undefined_precision_and_zero_f1(tmp_path: Path) -> None:
    result = evaluate.SetResult(evaluate.EvalSet("s", tmp_path, "words", (), 0, 0))
    result.images.append(evaluate.score_image(evaluate.Sample(tmp_path / "i.png", ("word",), None, ()), [], None, None, 0.1))
    scores = result.scores()
    assert scores["precision"] is None
    assert scores["recall"] == 0.0 and scores["f1"] == 0.0


# --- plates ---------------------------------------------------------------------------------


def test_plate_normalisation() -> None:
    assert plate_key("TS 260-AK") == "ts260ak"
    assert plates_read(["Dealer", "TS 260AK"], ["TS260AK"]) == 1
    assert plates_read(["RP-NL", "93"], ["RP-NL-93"]) == 1, "output lines are joined before matching"
    assert plates_read(["TS 26O AK"], ["TS260AK"]) == 0
    assert plates_read([], ["ABC123"]) == 0


# --- detection matching ---------------------------------------------------------------------


def test_line_box_finds_the_words_it_covers() -> None:
    words = ((10, 10, 50, 30), (60, 10, 100, 30), (10, 100, 50, 120))
    line = (5, 5, 105, 35)
    count = detection_count([line], words, (), (200, 200))
    assert count == DetCount(truth=3, found=2, predicted=1, correct=1, ignored=0)


def test_frame_sized_box_finds_nothing() -> None:
    """A box much higher than a word is not its line, however much of the word it covers."""
    words = ((10, 10, 50, 30), (60, 100, 100, 120))
    count = detection_count([(0, 0, 200, 200)], words, (), (200, 200))
    assert count.found == 0
    assert detection_count([(0, 0, 200, 50)], words, (), (200, 200)).found == 1, "2.5x the word height still counts"


def test_prediction_on_dont_care_is_ignored_and_elsewhere_is_wrong() -> None:
    care = ((0, 0, 40, 20),)
    dont_care = ((100, 100, 140, 120),)
    predictions = [(0, 0, 40, 20), (100, 100, 140, 120), (150, 150, 190, 190)]
    count = detection_count(predictions, care, dont_care, (200, 200))
    assert (count.found, count.correct, count.ignored, count.predicted) == (1, 1, 1, 3)


def test_word_split_across_three_boxes_is_not_found() -> None:
    word = ((0, 0, 100, 20),)
    count = detection_count([(0, 0, 34, 20), (34, 0, 67, 20), (67, 0, 100, 20)], word, (), (50, 120))
    assert count.found == 0 and count.correct == 3


# --- sets on disk ---------------------------------------------------------------------------


def write_set(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


@pytest.fixture
def window_set(tmp_path: Path) -> Path:
    """Two rendered document windows with known lines, one duplicate and one video record to skip."""
    image, lines = document_window()
    folder = tmp_path / "sets" / "windows"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), image)
    cv2.imwrite(str(folder / "b.png"), cv2.resize(image, None, fx=1.25, fy=1.25, interpolation=cv2.INTER_CUBIC))
    # Manifest boxes are inclusive, the rendered ink boxes exclusive.
    gt = [{"text": ln.text, "box": [*ln.box[:2], ln.box[2] - 1, ln.box[3] - 1], "dont_care": False} for ln in lines]
    scaled = [{**g, "box": [round(v * 1.25) for v in g["box"]]} for g in gt]
    return write_set(
        folder,
        [
            {"image": "a.png", "lines": gt, "text": None},
            {"image": "b.png", "lines": scaled, "text": None},
            {"image": "a_copy.png", "lines": gt, "text": None, "duplicate_of": "a.png"},
            {"video": "clip.avi", "lines": [], "annotation_complete": False},
        ],
    )


def test_tesseract_mode_reads_known_lines(window_set: Path, tmp_path: Path, capsys) -> None:
    report, chart = tmp_path / "r.json", tmp_path / "c.png"
    code = evaluate.run(parse(str(window_set.parent), "--mode", "tesseract", "--json", str(report), "--chart", str(chart)))
    assert code == ExitCode.OK
    out, err = capsys.readouterr()
    assert "windows" in out and "skipped 1 video" in err
    data = json.loads(report.read_text())
    (row,) = data["sets"]
    assert (data["mode"], data["psm"], row["images"], row["failed"], row["skipped_duplicates"]) == ("tesseract", 3, 2, 0, 1)
    assert row["f1"] > 0.9, row
    assert row["det_precision"] is None, "tesseract mode has no detector to score"
    assert {"machine", "command", "date", "config"} <= set(data)
    assert cv2.imread(str(chart)) is not None


def test_unreadable_image_is_counted_failed_not_a_crash(tmp_path: Path, capsys) -> None:
    folder = write_set(
        tmp_path / "broken",
        [
            {"image": "missing.png", "lines": None, "text": "some words"},
            {"image": "junk.png", "lines": None, "text": "more words"},
        ],
    )
    (folder / "junk.png").write_text("not an image")
    report = tmp_path / "r.json"
    code = evaluate.run(parse(str(folder), "--mode", "tesseract", "--json", str(report)))
    assert code == ExitCode.PARTIAL
    assert "missing.png: no such file" in capsys.readouterr().err
    (row,) = json.loads(report.read_text())["sets"]
    assert (row["failed"], row["tokens_truth"], row["recall"], row["seconds_per_image"]) == (2, 4, 0.0, None)


def test_plate_set_scores_plate_recall(tmp_path: Path, capsys) -> None:
    """One plate string that is in the image (as 'Invoice 4471'), one that is not."""
    folder = tmp_path / "plates"
    folder.mkdir()
    cv2.imwrite(str(folder / "p.png"), document_window()[0])
    plates = [{"text": "INVOICE-4471", "box": None}, {"text": "ZZ999", "box": None}]
    write_set(folder, [{"image": "p.png", "lines": plates, "annotation_complete": False}])
    assert evaluate.run(parse(str(folder), "--mode", "tesseract", "--psm", "11")) == ExitCode.OK
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.startswith("plates") and "plate 0.500" in row


def test_dir_without_manifest_exits_66(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(InputMissing, match="no manifest.jsonl") as caught:
        evaluate.run(parse(str(tmp_path / "empty")))
    assert caught.value.exit_code == ExitCode.NO_INPUT == 66
    with pytest.raises(InputMissing, match="no such folder"):
        find_sets([tmp_path / "nowhere"])


def test_bad_manifest_line_names_the_line(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "manifest.jsonl").write_text('{"image": "a.png", "lines": null, "text": "x"}\n{oops\n')
    with pytest.raises(InputError, match=r"manifest.jsonl:2: not JSON"):
        evaluate.load_set(folder)


# --- pipeline mode --------------------------------------------------------------------------


def test_pipeline_mode_runs_and_reports(window_set: Path, tiny_model, write_config, tmp_path: Path) -> None:
    """Random weights: the numbers mean nothing, but every column is produced."""
    cfg, weights = tiny_model
    config = write_config(f'[detector]\ncfg = "{cfg}"\nweights = "{weights}"\nconfidence = 0.05\n')
    report = tmp_path / "r.json"
    code = evaluate.run(parse(str(window_set), "-c", str(config), "--limit", "1", "--json", str(report)))
    assert code == ExitCode.OK
    (row,) = json.loads(report.read_text())["sets"]
    assert row["images"] == 1 and row["seconds_per_image"] > 0
    assert row["det_recall"] is not None and row["f1"] is not None


def test_pipeline_mode_reads_known_lines(window_set: Path, tmp_path: Path) -> None:
    if not SHIPPED_WEIGHTS.exists():
        pytest.skip("backup/textwatch-tiny.weights is not trained yet (issue 3): no accuracy to check")
    report = tmp_path / "r.json"
    assert SHIPPED_CFG.exists()
    assert evaluate.run(parse(str(window_set), "--json", str(report))) == ExitCode.OK
    (row,) = json.loads(report.read_text())["sets"]
    assert row["f1"] > 0.8 and row["det_recall"] > 0.8, row


# --- video clips ----------------------------------------------------------------------------


def clip_read(text: str, confidence: float, status: str = "text", scheduled: bool = False) -> evaluate.ClipRead:
    return evaluate.ClipRead(frame=0, track=1, status=status, text=text, confidence=confidence, scheduled=scheduled)


def test_majority_counts_reads_and_breaks_ties_by_mean_confidence() -> None:
    reads = [clip_read("RP-NL-93", 60), clip_read("RP-NL-93", 70), clip_read("RP-NL-98", 95), clip_read("RP-NL-98", 90),
             clip_read("BUS", 99), clip_read("", 0, "empty"), clip_read("", 0, "failed")]
    assert evaluate.majority_lines(reads, 1) == ["RP-NL-98"], "2 reads each: the higher mean confidence wins"
    assert evaluate.majority_lines(reads, 2) == ["RP-NL-98", "RP-NL-93"]
    assert evaluate.majority_lines([clip_read("", 0, "empty")], 1) == []


def test_best_single_takes_the_most_confident_distinct_texts() -> None:
    reads = [clip_read("RP-NL-93", 60), clip_read("RP-NL-93", 91), clip_read("BUS", 90), clip_read("AB", 99, "empty")]
    assert evaluate.best_single_lines(reads, 1) == ["RP-NL-93"]
    assert evaluate.best_single_lines(reads, 3) == ["RP-NL-93", "BUS"], "one line per text, never the same text twice"


def test_consolidated_output_and_ocr_calls_come_from_the_scheduled_reads(tmp_path: Path) -> None:
    """Per-frame modes pay for every read; the consolidated one only for the reads the tracker scheduled."""
    sample = evaluate.VideoSample(tmp_path / "c.avi", ("RP-NL-93",), 12.0)
    reads = [clip_read("RP-NL-93", 80, scheduled=True), clip_read("XX", 95), clip_read("XX", 94)]
    result = evaluate.score_video(sample, evaluate.ClipWatch(frames=3, reads=reads, finals=["RP-NL-93"], tracks=1), 0.5)
    modes = result.modes
    assert (modes["consolidated"].plates_read, modes["best_single"].plates_read, modes["majority"].plates_read) == (1, 0, 0)
    assert (modes["consolidated"].ocr_calls, modes["best_single"].ocr_calls, modes["majority"].ocr_calls) == (1, 3, 3)


def test_video_records_without_plates_are_skipped(tmp_path: Path) -> None:
    folder = write_set(
        tmp_path / "videos",
        [
            {"video": "a.avi", "fps": 12.0, "lines": [{"text": "RP-NL-93", "box": None, "frames": [0, 35]}],
             "annotation_complete": False},
            {"video": "subs.mp4", "fps": 30.0, "lines": None, "text": None},
        ],
    )
    loaded = evaluate.load_set(folder)
    assert loaded.kind == "plates" and loaded.samples == ()
    assert loaded.videos == (evaluate.VideoSample(folder / "a.avi", ("RP-NL-93",), 12.0),)
    assert (loaded.skipped_videos, loaded.skipped_video_names) == (1, ("subs.mp4",))


def whole_frame_config(folder: Path) -> Path:
    """A config whose detector gives one box covering the frame exactly (support/models.py)."""
    from support.models import whole_frame_model

    cfg, weights = whole_frame_model(folder)
    config = folder / "whole.toml"
    config.write_text(f'[detector]\ncfg = "{cfg}"\nweights = "{weights}"\npadding = 0.0\ntiling = "off"\n')
    return config


def test_rendered_clip_is_scored_in_all_three_modes(tmp_path: Path, capsys) -> None:
    """A tight one-line plate clip, 2 s at 12 fps, through the whole-frame detector: every mode reads the
    plate, the per-frame modes read all 24 frames and the tracker reads the static plate far fewer times."""
    from support.clips import write_line_clip

    folder = tmp_path / "videos"
    folder.mkdir()
    write_line_clip(folder / "plate.mp4", ["RP-NL-93"], frames_each=24, fps=12.0)
    write_set(
        folder,
        [
            {"video": "plate.mp4", "fps": 12.0, "frames": 24, "annotation_complete": False,
             "lines": [{"text": "RP-NL-93", "box": None, "dont_care": False, "level": "plate", "frames": [0, 23]}]},
            {"video": "subtitles.mp4", "lines": None, "text": None},
        ],
    )
    report = tmp_path / "r.json"
    code = evaluate.run(parse(str(folder), "-c", str(whole_frame_config(tmp_path)), "--json", str(report)))
    assert code == ExitCode.OK
    out, err = capsys.readouterr()
    assert "skipped 1 video record(s) without plate ground truth (subtitles.mp4)" in err
    assert "plate.mp4" in out and "videos: plate recall" in out, out
    (row,) = json.loads(report.read_text())["sets"]
    assert row["video_plate_recall"] == {"consolidated": 1.0, "best_single": 1.0, "majority": 1.0}, row["per_clip"]
    assert (row["clips"], row["clips_failed"], row["clip_frames"]) == (1, 0, 24)
    (clip,) = row["per_clip"]
    assert plate_key(clip["modes"]["consolidated"]["lines"][0]) == "rpnl93"
    calls = row["video_ocr_calls"]
    assert calls["majority"] == calls["best_single"] == 24, "one region per frame, every one read"
    assert 1 <= calls["consolidated"] <= 3, calls
    assert clip["tracks"] == 1


def test_unreadable_clip_is_counted_failed(tmp_path: Path, capsys) -> None:
    folder = write_set(tmp_path / "videos", [{"video": "missing.avi", "fps": 12.0, "lines": [{"text": "AB-12-CD"}]}])
    code = evaluate.run(parse(str(folder), "-c", str(whole_frame_config(tmp_path))))
    assert code == ExitCode.PARTIAL
    out, err = capsys.readouterr()
    assert "missing.avi: no such file" in err and "FAILED" in out


def test_real_plate_clip_runs(tmp_path: Path) -> None:
    """The first clip of ../shared/eval/videos, end to end: the shipped detector when trained, else the
    whole-frame one (then only that it runs; the numbers mean nothing)."""
    videos = shared_path("eval", "videos")
    config = None if SHIPPED_WEIGHTS.exists() else whole_frame_config(tmp_path)
    report = tmp_path / "r.json"
    argv = [str(videos), "--limit", "1", "--json", str(report)] + (["-c", str(config)] if config else [])
    assert evaluate.run(parse(*argv)) == ExitCode.OK
    (row,) = json.loads(report.read_text())["sets"]
    (clip,) = row["per_clip"]
    assert clip["frames"] == 36 and clip["error"] is None
    assert set(clip["modes"]) == {"consolidated", "best_single", "majority"}
    assert clip["modes"]["consolidated"]["ocr_calls"] <= clip["modes"]["majority"]["ocr_calls"]


def test_tesseract_mode_says_clips_need_the_pipeline(tmp_path: Path, capsys) -> None:
    folder = write_set(tmp_path / "videos", [{"video": "a.avi", "fps": 12.0, "lines": [{"text": "AB-12-CD"}]}])
    assert evaluate.run(parse(str(folder), "--mode", "tesseract")) == ExitCode.OK
    assert "skipped 1 video clip(s): scoring clips needs --mode pipeline" in capsys.readouterr().err


def test_video_line_without_text_names_the_manifest_line(tmp_path: Path) -> None:
    folder = write_set(tmp_path / "videos", [{"video": "a.avi", "lines": [{"frames": [0, 3]}]}])
    with pytest.raises(InputError, match=r"manifest.jsonl:1: every video line needs a 'text'"):
        evaluate.load_set(folder)


def test_consolidated_plates_beat_the_per_frame_majority_on_the_real_clips(tmp_path: Path) -> None:
    """Issue 7's measure on ../shared/eval/videos with the shipped detector: consolidation is right on at
    least as many clips as the per-frame majority, and on some (regression: session 1 read no plate in any
    mode, because the OCR preprocessing inverted plates framed in dark)."""
    needs_shipped_model()
    videos = shared_path("eval", "videos")
    report = tmp_path / "r.json"
    assert evaluate.run(parse(str(videos), "--json", str(report))) == ExitCode.OK
    (row,) = json.loads(report.read_text())["sets"]
    recall = row["video_plate_recall"]
    assert recall["consolidated"] >= recall["majority"], recall
    assert recall["consolidated"] > 0, recall
