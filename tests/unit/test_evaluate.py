"""`textwatch eval`: the scoring rules of SCORING.md on hand-made cases, and how sets are read.

Real runs on tiny sets (real Tesseract, real detectors) are in process/test_evaluate_runs.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.eval_sets import parse, write_set
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


def test_video_line_without_text_names_the_manifest_line(tmp_path: Path) -> None:
    folder = write_set(tmp_path / "videos", [{"video": "a.avi", "lines": [{"frames": [0, 3]}]}])
    with pytest.raises(InputError, match=r"manifest.jsonl:1: every video line needs a 'text'"):
        evaluate.load_set(folder)
