"""`textwatch eval`: accuracy and speed on the evaluation sets (../shared/eval), scored as SCORING.md says.

Each DIR is a set folder holding a manifest.jsonl (format: shared/eval/README.md);
a folder holding several sets stands for all of them. Records marked
`duplicate_of` are skipped; video records are scored as clips (below).

Two readers produce the output lines of an image:

- `--mode pipeline`: the whole textwatch pipeline (`OneShot`: detector, then
  Tesseract on each line crop); output lines = its legible lines.
- `--mode tesseract`: Tesseract alone on the whole image with a full-page
  `--psm` (default 3), one persistent tesserocr API; output lines = Tesseract's
  own text lines. This is the baseline docs/accuracy.md compares against.

Word scores (SCORING.md, sets with complete annotation): tokens are the maximal
runs of [a-z0-9] in the lower-cased text; per image, matched = size of the
multiset intersection of output and ground-truth tokens; precision, recall and
F1 are micro-averaged over the set (F1 is computed as 2*matched /
(predicted + truth), which equals 2PR/(P+R) and stays defined when nothing was
output). Ground truth is `lines[].text` minus `dont_care` lines and `###`, or
`text` split into lines where `lines` is null.

Plate recall (sets with `annotation_complete: false`): a plate is read when its
string, lower-cased and stripped of everything but [a-z0-9], is a substring of
all output lines of its image joined and normalised the same way.

Detection scores (pipeline mode only; images whose every ground-truth line has
a box). Predicted boxes are text *lines* while most ground truth is *words*, so
matching is by coverage, not IoU:

- a ground-truth box (not do-not-care) is found when at least 50% of its area
  lies inside one single predicted box that is at most 2.5 times as high as it
  (a line box covering a word counts, padding, x-height-only words and slight
  tilt included; a word split across several predictions does not, and neither
  does a paragraph- or frame-sized box, which would otherwise "find"
  everything: on plate sets no precision would expose it);
- a predicted box is *ignored* (neither right nor wrong, as in the ICDAR 2015
  protocol) when at least 50% of its area is covered by the union of
  do-not-care boxes; otherwise it is correct when at least 50% of its area is
  covered by the union of all ground-truth boxes (do-not-care included), and a
  false positive when not.

Detection recall = found / ground-truth boxes; detection precision = correct /
(predictions - ignored). On incomplete sets (plates) only recall is reported:
unannotated text makes precision meaningless. Ground-truth boxes are inclusive
pixel coordinates, predicted ones exclusive; both are compared as pixel sets.

Video clips (`"video"` records; pipeline mode only, since each needs the
detector). Every frame is read with OpenCV and goes through `OneShot.read`
(detector, then Tesseract on every region); the same frames and detections feed
a `Tracker` (settings.tracking), and the reads of the crops its OCR schedule
picks vote in a `Consolidator` (settings.consolidation, default filters). One
clip gives three outputs, each scored with the plate recall rule above (the
clip's plate strings against its output lines), with k = the clip's number of
plates:

- `majority`: the k texts read most often over all regions of all frames
  (ties: higher mean OCR confidence);
- `best_single`: the k distinct texts of the most confident single reads;
- `consolidated`: the final text of every track, after `Tracker.finish()`.

OCR calls: the per-frame outputs cost one read per detected region per frame;
the consolidated output costs only the reads the tracker scheduled. Those are
the very crops the per-frame pass already read (Tesseract is deterministic), so
their reads are taken from it rather than made twice; the count is what the
daemon would spend. Records without plate ground truth (`lines` null or empty,
e.g. the subtitle clip) are skipped with a line on stderr saying so; `--limit`
applies to clips as well.

Seconds per image: wall clock from the image file to its output lines (decode
and read), the reader already built, so model loading is excluded.

An image that cannot be loaded or read is reported on stderr, counted as
failed, and scored as empty output (its truth still counts); the exit code is
then 1 (errors.ExitCode.PARTIAL).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import cv2
import numpy as np

from textwatch.config import FilterSettings, Settings, load_settings
from textwatch.detect.geometry import Box
from textwatch.errors import ExitCode, InputError, InputMissing, TextwatchError
from textwatch.log import get_logger

if TYPE_CHECKING:  # imported where used: the detector runtime is slow to import
    from textwatch.tracking.consolidate import Consolidator
    from textwatch.tools.oneshot import OneShot

Kind = Literal["words", "plates"]
MANIFEST = "manifest.jsonl"
COVER = 0.5  # the coverage threshold of every detection-matching rule above
MAX_HEIGHT_RATIO = 2.5  # a predicted box finding a ground-truth box is at most this much higher
_TOKEN = re.compile(r"[a-z0-9]+")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


# --- the command line ----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dirs", nargs="+", type=Path, metavar="DIR", help="eval set folders (with manifest.jsonl) or a folder of sets"
    )
    parser.add_argument("-c", "--config", type=Path, help="config file (default: built-in defaults)")
    parser.add_argument(
        "--mode",
        choices=["pipeline", "tesseract", "rapidocr"],
        default="pipeline",
        help="the whole textwatch pipeline (default), Tesseract alone on the whole image (the baseline), "
        "or rapidocr 3.10's own detector and recognizer (the reference to catch up with)",
    )
    parser.add_argument(
        "--engine", choices=["tesserocr", "pytesseract", "ppocr"],
        help="pipeline mode: the OCR engine (overrides ocr.engine of the config)",
    )
    parser.add_argument(
        "--detector", choices=["yolo", "ppocr"],
        help="pipeline mode: the text detector (overrides detector.model of the config): our YOLOv4 or PP-OCRv6's",
    )
    parser.add_argument(
        "--psm",
        type=int,
        choices=range(14),
        metavar="N",
        help="Tesseract page segmentation mode; default 3 in tesseract mode, in pipeline mode it overrides ocr.psm",
    )
    parser.add_argument("--limit", type=int, metavar="N", help="score only the first N images of each set")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="write the full report (per set and per image) as JSON")
    parser.add_argument("--chart", type=Path, metavar="OUT.png", help="draw a bar chart of F1 (plate recall) per set")


def run(args: argparse.Namespace) -> int:
    """Score every set, print the table, write the optional JSON and chart."""
    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be at least 1")
    folders = find_sets(args.dirs)
    settings = load_settings(args.config)
    if args.engine:
        settings.ocr.engine = args.engine
    if args.detector:
        settings.detector.model = args.detector
    psm = args.psm if args.psm is not None else (3 if args.mode == "tesseract" else settings.ocr.psm)
    settings.ocr.psm = psm
    eval_sets = [load_set(folder, args.limit) for folder in folders]
    reader = make_reader(args.mode, settings)
    try:
        results = [evaluate_set(reader, s, settings) for s in eval_sets]
    finally:
        reader.close()
    print(format_table(results))
    if any(r.videos for r in results):
        print()
        print(format_clip_table(results))
    if args.json:
        write_json(args.json, report(results, args, settings, psm))
    if args.chart:
        write_chart(args.chart, results, f"{args.mode} psm {psm}")
    return ExitCode.PARTIAL if any(r.failed or r.clips_failed for r in results) else ExitCode.OK


# --- ground truth --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One image record of a manifest, reduced to what scoring needs."""

    image: Path
    truth: tuple[str, ...]  # ground-truth lines that count
    boxes: tuple[Box, ...] | None  # boxes of those lines (exclusive x2, y2); None = not all boxed
    dont_care: tuple[Box, ...]  # do-not-care boxes (exclusive x2, y2)


@dataclass(frozen=True)
class VideoSample:
    """One video record with plate ground truth."""

    video: Path
    plates: tuple[str, ...]
    fps: float | None  # from the manifest; None = ask the file


@dataclass(frozen=True)
class EvalSet:
    name: str
    folder: Path
    kind: Kind
    samples: tuple[Sample, ...]
    skipped_videos: int  # video records without plate ground truth
    skipped_duplicates: int
    videos: tuple[VideoSample, ...] = ()
    skipped_video_names: tuple[str, ...] = ()


def find_sets(paths: list[Path]) -> list[Path]:
    """Set folders: each path itself when it has a manifest, else its sub-folders that have one."""
    folders: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise InputMissing(f"{path}: no such folder")
        if (path / MANIFEST).is_file():
            folders.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if (p / MANIFEST).is_file())
        if not inside:
            raise InputMissing(f"{path}: no {MANIFEST} here or in any sub-folder; not an eval set")
        folders += inside
    return folders


def load_set(folder: Path, limit: int | None = None) -> EvalSet:
    """Parse a set's manifest; bad JSON or a record without ground truth is an InputError naming the line."""
    manifest = folder / MANIFEST
    samples: list[Sample] = []
    videos: list[VideoSample] = []
    no_truth: list[str] = []
    kinds: set[Kind] = set()
    duplicates = 0
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{manifest}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{where}: not JSON ({err})") from None
        if "video" in record:
            video = parse_video(folder, record, where)
            if video is None:
                no_truth.append(record["video"])
            else:
                videos.append(video)
        elif record.get("duplicate_of"):
            duplicates += 1
        elif "image" not in record:
            raise InputError(f"{where}: record has neither 'image' nor 'video'")
        else:
            kinds.add("words" if record.get("annotation_complete", True) else "plates")
            samples.append(parse_sample(folder, record, where))
    if len(kinds) > 1:
        raise InputError(f"{manifest}: mixes complete and incomplete (annotation_complete: false) records")
    kind: Kind = kinds.pop() if kinds else ("plates" if videos else "words")
    return EvalSet(
        folder.name, folder, kind, tuple(samples[:limit]), len(no_truth), duplicates, tuple(videos[:limit]), tuple(no_truth)
    )


def parse_video(folder: Path, record: dict, where: str) -> VideoSample | None:
    """A video record's plates (lines that count); None when it has none, like the subtitle clip."""
    lines = record.get("lines") or []
    if not all(isinstance(line, dict) and isinstance(line.get("text"), str) for line in lines):
        raise InputError(f"{where}: every video line needs a 'text' string")
    plates = tuple(line["text"] for line in lines if counts(line))
    if not plates:
        return None
    fps = record.get("fps")
    return VideoSample(folder / record["video"], plates, float(fps) if fps else None)


def parse_sample(folder: Path, record: dict, where: str) -> Sample:
    lines = record.get("lines")
    if lines is None:
        if record.get("text") is None:
            raise InputError(f"{where}: record has neither 'lines' nor 'text'")
        return Sample(folder / record["image"], tuple(record["text"].splitlines()), None, ())
    care = [line for line in lines if counts(line)]
    boxes = tuple(exclusive(line["box"]) for line in care) if all(line.get("box") for line in care) else None
    dont_care = tuple(exclusive(line["box"]) for line in lines if not counts(line) and line.get("box"))
    return Sample(folder / record["image"], tuple(line["text"] for line in care), boxes, dont_care)


def counts(line: dict) -> bool:
    """A ground-truth line is scored unless it is do-not-care or ICDAR's `###`."""
    return not line.get("dont_care") and line["text"] != "###"


def truth_lines(record: dict) -> list[str]:
    """The scored ground-truth lines of a manifest record (SCORING.md)."""
    return list(parse_sample(Path("."), record, "record").truth)


def exclusive(box: list[int]) -> Box:
    """Manifest boxes are inclusive; make x2, y2 exclusive like the detector's."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return (x1, y1, x2 + 1, y2 + 1)


# --- scoring -------------------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    """Lower-case, then every maximal run of [a-z0-9]."""
    return _TOKEN.findall(text.lower())


def plate_key(text: str) -> str:
    """A plate string or output lower-cased with everything but [a-z0-9] removed."""
    return _NOT_ALNUM.sub("", text.lower())


@dataclass(frozen=True)
class WordCount:
    matched: int
    predicted: int
    truth: int


def word_count(output: list[str], truth: list[str] | tuple[str, ...]) -> WordCount:
    """Bag-of-words match of one image: size of the multiset intersection of the two token bags."""
    predicted = Counter(t for line in output for t in tokens(line))
    expected = Counter(t for line in truth for t in tokens(line))
    return WordCount(sum((predicted & expected).values()), sum(predicted.values()), sum(expected.values()))


def plates_read(output: list[str], plates: list[str] | tuple[str, ...]) -> int:
    """How many plates appear, normalised, in the normalised join of all output lines."""
    joined = plate_key("".join(output))
    return sum(1 for plate in plates if plate_key(plate) in joined)


@dataclass(frozen=True)
class DetCount:
    truth: int  # ground-truth boxes (not do-not-care)
    found: int
    predicted: int
    correct: int
    ignored: int  # predictions lying mostly in do-not-care regions


def detection_count(predicted: list[Box], truth: tuple[Box, ...], dont_care: tuple[Box, ...], shape: tuple[int, int]) -> DetCount:
    """Match predicted line boxes to ground-truth boxes by coverage (rules in the module docstring)."""
    found = sum(1 for g in truth if best_cover(g, predicted) >= COVER)
    ignore_cover = union_integral(dont_care, shape)
    any_cover = union_integral(truth + dont_care, shape)
    ignored = correct = 0
    for box in predicted:
        if covered(ignore_cover, box) >= COVER:
            ignored += 1
        elif covered(any_cover, box) >= COVER:
            correct += 1
    return DetCount(len(truth), found, len(predicted), correct, ignored)


def best_cover(target: Box, boxes: list[Box]) -> float:
    """The largest fraction of `target`'s area inside any one of `boxes` not too high to be its line."""
    x1, y1, x2, y2 = target
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    b = b[b[:, 3] - b[:, 1] <= MAX_HEIGHT_RATIO * (y2 - y1)]
    if not len(b):
        return 0.0
    w = np.clip(np.minimum(b[:, 2], x2) - np.maximum(b[:, 0], x1), 0, None)
    h = np.clip(np.minimum(b[:, 3], y2) - np.maximum(b[:, 1], y1), 0, None)
    return float((w * h).max()) / max(1, (x2 - x1) * (y2 - y1))


def union_integral(boxes: tuple[Box, ...], shape: tuple[int, int]) -> np.ndarray:
    """Integral image of the union of `boxes` on a frame of `shape` (h, w): O(1) coverage queries."""
    mask = np.zeros(shape, dtype=np.uint8)
    for x1, y1, x2, y2 in boxes:
        mask[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = 1
    return cv2.integral(mask)


def covered(integral: np.ndarray, box: Box) -> float:
    """Fraction of `box`'s area inside the union whose integral image is given (outside the frame = uncovered)."""
    x1, y1, x2, y2 = box
    area = (x2 - x1) * (y2 - y1)
    if area <= 0:
        return 0.0
    h, w = integral.shape[0] - 1, integral.shape[1] - 1
    cx1, cx2 = min(max(x1, 0), w), min(max(x2, 0), w)
    cy1, cy2 = min(max(y1, 0), h), min(max(y2, 0), h)
    inside = integral[cy2, cx2] - integral[cy1, cx2] - integral[cy2, cx1] + integral[cy1, cx1]
    return float(inside) / area


# --- readers -------------------------------------------------------------------------------


class Reader(Protocol):
    name: str

    def read(self, frame: np.ndarray) -> tuple[list[str], list[Box] | None]:
        """Output lines of a BGR frame, and the predicted boxes (None when the reader has no detector)."""
        ...

    def close(self) -> None: ...


class PipelineReader:
    """The whole textwatch one-shot pipeline, built once."""

    name = "pipeline"

    def __init__(self, settings: Settings) -> None:
        from textwatch.tools.oneshot import OneShot

        self.oneshot = OneShot(settings)  # video clips use its detector and recognizer directly

    def read(self, frame: np.ndarray) -> tuple[list[str], list[Box] | None]:
        from textwatch.tools.oneshot import text_lines

        regions = self.oneshot.read(frame)
        return text_lines(regions), [r.detection.box for r in regions]

    def close(self) -> None:
        self.oneshot.close()


class TesseractReader:
    """Tesseract alone on the whole image (full-page psm): the baseline. One persistent API.

    Tesseract's own defaults are kept (OEM default, inverted-text retry on) so the
    numbers compare with the `tesseract IMAGE stdout --psm N` command line.
    """

    name = "tesseract"

    def __init__(self, settings: Settings) -> None:
        import tesserocr

        from textwatch.errors import BackendUnavailable
        from textwatch.recognize import check_languages, find_tessdata

        tessdata = find_tessdata(settings.ocr.tessdata)
        check_languages(tessdata, settings.ocr.languages)
        self._tesserocr = tesserocr
        try:
            self._api = tesserocr.PyTessBaseAPI(path=str(tessdata) + "/", lang=settings.ocr.languages, psm=settings.ocr.psm)
        except RuntimeError as err:
            raise BackendUnavailable(f"Tesseract failed to start with {settings.ocr.languages!r}: {err}") from None

    def read(self, frame: np.ndarray) -> tuple[list[str], list[Box] | None]:
        rgb = np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        h, w = rgb.shape[:2]
        self._api.SetImageBytes(rgb.tobytes(), w, h, 3, 3 * w)
        if not self._api.Recognize():
            raise InputError("Tesseract failed to recognize the image")
        # The page text holds one text line per line (blank lines between blocks);
        # iterating RIL.TEXTLINE instead raises on lines Tesseract found empty.
        return [line.strip() for line in self._api.GetUTF8Text().splitlines() if line.strip()], None

    def close(self) -> None:
        self._api.End()


class RapidOcrReader:
    """rapidocr 3.10's whole pipeline (its PP-OCRv6 det + cls + rec, the models of its wheel): the
    reference row of docs/accuracy.md, measured by the same scorer on the same machine. Only here,
    in the eval tool: the daemon never runs rapidocr's pipeline."""

    name = "rapidocr"

    def __init__(self, settings: Settings) -> None:
        import logging

        from rapidocr import RapidOCR

        logging.getLogger("RapidOCR").setLevel(logging.WARNING)  # it logs every model it loads at INFO
        self._engine = RapidOCR()

    def read(self, frame: np.ndarray) -> tuple[list[str], list[Box] | None]:
        result = self._engine(frame)
        if result.boxes is None or result.txts is None:
            return [], []
        boxes: list[Box] = [
            (int(q[:, 0].min()), int(q[:, 1].min()), int(np.ceil(q[:, 0].max())) + 1, int(np.ceil(q[:, 1].max())) + 1)
            for q in np.asarray(result.boxes)
        ]
        return [t for t in result.txts if t.strip()], boxes

    def close(self) -> None:
        pass


def make_reader(mode: str, settings: Settings) -> Reader:
    readers = {"pipeline": PipelineReader, "tesseract": TesseractReader, "rapidocr": RapidOcrReader}
    return readers[mode](settings)


# --- evaluation ----------------------------------------------------------------------------


@dataclass
class ImageResult:
    image: str
    lines: list[str]
    words: WordCount
    plates: int
    plates_read: int
    detection: DetCount | None
    seconds: float | None
    error: str | None = None


@dataclass
class ModeResult:
    """One clip's output lines under one video mode, scored."""

    lines: list[str]
    plates_read: int
    ocr_calls: int  # crops sent to Tesseract for this output


@dataclass
class VideoResult:
    clip: str
    plates: list[str]
    frames: int
    tracks: int  # tracks the Tracker made over the clip
    seconds: float | None  # wall clock of the whole clip: decode, detect, read, track, vote
    modes: dict[str, ModeResult]  # keyed by VIDEO_MODES
    error: str | None = None


@dataclass
class SetResult:
    eval_set: EvalSet
    images: list[ImageResult] = field(default_factory=list)
    videos: list[VideoResult] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.eval_set.name

    @property
    def failed(self) -> int:
        return sum(1 for i in self.images if i.error is not None)

    @property
    def clips_failed(self) -> int:
        return sum(1 for v in self.videos if v.error is not None)

    def video_recall(self, mode: str) -> float | None:
        """Plate recall of one video mode over the set's clips."""
        return ratio(sum(v.modes[mode].plates_read for v in self.videos), sum(len(v.plates) for v in self.videos))

    def video_calls(self, mode: str) -> int:
        return sum(v.modes[mode].ocr_calls for v in self.videos)

    def video_scores(self) -> dict[str, object]:
        """Plate recall and OCR calls per video mode over the set's clips (empty when none were scored)."""
        if not self.videos:
            return {}
        return {
            "clips": len(self.videos),
            "clips_failed": self.clips_failed,
            "clip_frames": sum(v.frames for v in self.videos),
            "video_plate_recall": {m: self.video_recall(m) for m in VIDEO_MODES},
            "video_ocr_calls": {m: self.video_calls(m) for m in VIDEO_MODES},
        }

    def scores(self) -> dict[str, float | int | None]:
        """Micro-averaged set scores; a ratio with nothing to divide by is None, never 0."""
        matched, predicted, truth = (sum(getattr(i.words, k) for i in self.images) for k in ("matched", "predicted", "truth"))
        words = self.eval_set.kind == "words"
        dets = [i.detection for i in self.images if i.detection is not None]
        seconds = [i.seconds for i in self.images if i.seconds is not None]
        scored_predictions = sum(d.predicted - d.ignored for d in dets)
        return {
            "images": len(self.images),
            "failed": self.failed,
            "precision": ratio(matched, predicted) if words else None,
            "recall": ratio(matched, truth) if words else None,
            "f1": ratio(2 * matched, predicted + truth) if words else None,
            "plate_recall": None if words else ratio(sum(i.plates_read for i in self.images), sum(i.plates for i in self.images)),
            "det_precision": ratio(sum(d.correct for d in dets), scored_predictions) if words and dets else None,
            "det_recall": ratio(sum(d.found for d in dets), sum(d.truth for d in dets)) if dets else None,
            "seconds_per_image": sum(seconds) / len(seconds) if seconds else None,
            "tokens_matched": matched,
            "tokens_predicted": predicted,
            "tokens_truth": truth,
        }

    def headline(self) -> float | None:
        """F1, or plate recall for plate sets: what the chart draws."""
        scores = self.scores()
        return scores["f1"] if self.eval_set.kind == "words" else scores["plate_recall"]  # type: ignore[return-value]


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def evaluate_set(reader: Reader, eval_set: EvalSet, settings: Settings) -> SetResult:
    """Read and score every image and clip of a set; a failed one is reported and scored as empty output."""
    log = get_logger(set=eval_set.name, mode=reader.name)
    result = SetResult(eval_set)
    for index, sample in enumerate(eval_set.samples, 1):
        image = evaluate_image(reader, sample, settings.image.max_pixels)
        if image.error is not None:
            print(f"textwatch eval: {image.error}", file=sys.stderr)
        log.info("eval_image", image=image.image, index=index, of=len(eval_set.samples), seconds=image.seconds)
        result.images.append(image)
    result.videos = evaluate_videos(reader, eval_set, settings)
    return result


def evaluate_image(reader: Reader, sample: Sample, max_pixels: int) -> ImageResult:
    from textwatch.tools.oneshot import load_image

    start = time.perf_counter()
    try:
        frame = load_image(sample.image, max_pixels)
        lines, boxes = reader.read(frame)
    except TextwatchError as err:
        message = str(err) if str(sample.image) in str(err) else f"{sample.image}: {err}"
        return score_image(sample, [], None, None, None, error=message)
    seconds = time.perf_counter() - start
    return score_image(sample, lines, boxes, frame.shape[:2], seconds)


def score_image(
    sample: Sample,
    lines: list[str],
    boxes: list[Box] | None,
    shape: tuple[int, int] | None,
    seconds: float | None,
    error: str | None = None,
) -> ImageResult:
    """Score one image's output; `boxes` None means no detection score (no detector, or failed)."""
    detection = None
    if sample.boxes is not None and (boxes is not None or error is not None):
        if error is not None or shape is None:
            detection = DetCount(len(sample.boxes), 0, 0, 0, 0)
        else:
            detection = detection_count(boxes or [], sample.boxes, sample.dont_care, shape)
    return ImageResult(
        image=sample.image.name,
        lines=lines,
        words=word_count(lines, sample.truth),
        plates=len(sample.truth),
        plates_read=plates_read(lines, sample.truth),
        detection=detection,
        seconds=seconds,
        error=error,
    )


# --- video clips ---------------------------------------------------------------------------

VIDEO_MODES = ("consolidated", "best_single", "majority")


@dataclass(frozen=True)
class ClipRead:
    """One detected region of one frame, read; `scheduled` = the tracker would send this crop to OCR."""

    frame: int
    track: int
    status: str  # the Reading's: text, empty or failed
    text: str
    confidence: float
    scheduled: bool


@dataclass
class ClipWatch:
    """What one pass over a clip gave: every read, and the final text of every track."""

    frames: int = 0
    reads: list[ClipRead] = field(default_factory=list)
    finals: list[str] = field(default_factory=list)
    tracks: int = 0


def evaluate_videos(reader: Reader, eval_set: EvalSet, settings: Settings) -> list[VideoResult]:
    """Score the set's clips (pipeline mode only); say on stderr which video records are skipped and why."""
    prefix = f"textwatch eval: {eval_set.name}:"
    if eval_set.skipped_videos:
        names = ", ".join(eval_set.skipped_video_names)
        print(f"{prefix} skipped {eval_set.skipped_videos} video record(s) without plate ground truth ({names})", file=sys.stderr)
    if not eval_set.videos:
        return []
    if not isinstance(reader, PipelineReader):
        print(f"{prefix} skipped {len(eval_set.videos)} video clip(s): scoring clips needs --mode pipeline (a detector)", file=sys.stderr)
        return []
    log = get_logger(set=eval_set.name, mode="video")
    results = []
    for index, sample in enumerate(eval_set.videos, 1):
        video = evaluate_video(reader.oneshot, sample, settings)
        if video.error is not None:
            print(f"textwatch eval: {video.error}", file=sys.stderr)
        log.info("eval_clip", clip=video.clip, index=index, of=len(eval_set.videos), frames=video.frames, seconds=video.seconds)
        results.append(video)
    return results


def evaluate_video(oneshot: OneShot, sample: VideoSample, settings: Settings) -> VideoResult:
    """Watch one clip, then score its three outputs; a clip that cannot be read scores as empty output."""
    start = time.perf_counter()
    try:
        watch = watch_clip(oneshot, sample, settings)
    except TextwatchError as err:
        message = str(err) if str(sample.video) in str(err) else f"{sample.video}: {err}"
        return score_video(sample, ClipWatch(), None, error=message)
    return score_video(sample, watch, time.perf_counter() - start)


def watch_clip(oneshot: OneShot, sample: VideoSample, settings: Settings) -> ClipWatch:
    """Every frame: detect and read every region (OneShot), track them, and vote the scheduled reads per track."""
    from textwatch.tracking.consolidate import Consolidator
    from textwatch.tracking.tracker import Tracker

    tracker = Tracker(settings.tracking)
    consolidator = Consolidator(settings.consolidation, FilterSettings())
    watch = ClipWatch()
    fps, frames = open_clip(sample)
    for index, frame in enumerate(frames):
        ts = index / fps
        regions = oneshot.read(frame)
        update = tracker.update(index, ts, [r.detection for r in regions], frame)
        for region, track, reason in zip(regions, update.tracks, update.ocr):
            read = ClipRead(index, track, region.reading.status, region.reading.text, region.reading.confidence, reason is not None)
            watch.reads.append(read)
            vote(consolidator, read, ts)
        watch.finals += end_tracks(consolidator, [gone.id for gone in update.gone])
        watch.frames = index + 1
    watch.finals += end_tracks(consolidator, [gone.id for gone in tracker.finish()])
    watch.tracks = tracker.next_id - 1
    return watch


def open_clip(sample: VideoSample) -> tuple[float, Iterator[np.ndarray]]:
    """The clip's frame rate (manifest first, then the file) and its frames, decoded by OpenCV."""
    if not sample.video.is_file():
        raise InputMissing(f"{sample.video}: no such file")
    capture = cv2.VideoCapture(str(sample.video))
    if not capture.isOpened():
        raise InputError(f"{sample.video}: OpenCV cannot open this video")
    fps = sample.fps or capture.get(cv2.CAP_PROP_FPS)
    if not fps or fps <= 0:
        capture.release()
        raise InputError(f"{sample.video}: no frame rate in the manifest or the file")
    return fps, decoded_frames(capture, sample.video)


def decoded_frames(capture: cv2.VideoCapture, path: Path) -> Iterator[np.ndarray]:
    try:
        ok, frame = capture.read()
        if not ok:
            raise InputError(f"{path}: no frame could be decoded")
        while ok:
            yield frame
            ok, frame = capture.read()
    finally:
        capture.release()


def vote(consolidator: Consolidator, read: ClipRead, ts: float) -> None:
    """A scheduled read with text votes in its track, as the daemon's publisher does."""
    if read.scheduled and read.status == "text":
        consolidator.add(read.track, read.text, read.confidence, ts)


def end_tracks(consolidator: Consolidator, track_ids: list[int]) -> list[str]:
    """The final texts of tracks that are gone (tracks without an acceptable text give none)."""
    finals = (consolidator.end(track) for track in track_ids)
    return [final.text for final in finals if final is not None and final.text]


def majority_lines(reads: list[ClipRead], k: int) -> list[str]:
    """The k texts read most often over all frames; ties go to the higher mean confidence."""
    texts = [r for r in reads if r.status == "text" and r.text.strip()]
    count = Counter(r.text for r in texts)
    total = Counter[str]()
    for r in texts:
        total[r.text] += r.confidence
    return sorted(count, key=lambda text: (-count[text], -total[text] / count[text], text))[:k]


def best_single_lines(reads: list[ClipRead], k: int) -> list[str]:
    """The texts of the k most confident single reads (distinct texts)."""
    best: dict[str, float] = {}
    for r in reads:
        if r.status == "text" and r.text.strip():
            best[r.text] = max(best.get(r.text, r.confidence), r.confidence)
    return sorted(best, key=lambda text: (-best[text], text))[:k]


def score_video(sample: VideoSample, watch: ClipWatch, seconds: float | None, error: str | None = None) -> VideoResult:
    """The three outputs of a watched clip, each scored by plate recall, with what each cost in OCR calls."""
    k = len(sample.plates)
    outputs = {
        "consolidated": (watch.finals, sum(1 for r in watch.reads if r.scheduled)),
        "best_single": (best_single_lines(watch.reads, k), len(watch.reads)),
        "majority": (majority_lines(watch.reads, k), len(watch.reads)),
    }
    modes = {mode: ModeResult(lines, plates_read(lines, sample.plates), calls) for mode, (lines, calls) in outputs.items()}
    return VideoResult(sample.video.name, list(sample.plates), watch.frames, watch.tracks, seconds, modes, error)


# --- output --------------------------------------------------------------------------------


def fmt(value: float | int | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(results: list[SetResult]) -> str:
    """One row per set: set, images, failed, P, R, F1 (or plate recall), det P/R, s/img."""
    header = f"{'set':<26} {'images':>6} {'failed':>6} {'P':>6} {'R':>6} {'F1/plateR':>11} {'det P':>6} {'det R':>6} {'s/img':>7}"
    rows = [header, "-" * len(header)]
    for result in results:
        s = result.scores()
        if not result.images:
            clips = f"; {len(result.videos)} clip(s), see the clip table" if result.videos else ""
            rows.append(f"{result.name:<26} {'0':>6}  (no images scored{clips})")
            continue
        headline = fmt(s["f1"]) if result.eval_set.kind == "words" else "plate " + fmt(s["plate_recall"])
        rows.append(
            f"{result.name:<26} {s['images']:>6} {s['failed']:>6} {fmt(s['precision']):>6} {fmt(s['recall']):>6} "
            f"{headline:>11} {fmt(s['det_precision']):>6} {fmt(s['det_recall']):>6} {fmt(s['seconds_per_image'], 2):>7}"
        )
    return "\n".join(rows)


def format_clip_table(results: list[SetResult]) -> str:
    """One row per clip: its plates, each mode's text (+ = plate read), OCR calls per mode; a recall row per set."""
    width = 20
    names = {"consolidated": "consolidated", "best_single": "best single", "majority": "majority"}
    header = f"{'clip':<30} {'frames':>6} {'GT plate':<12} " + " ".join(f"{names[m]:<{width}}" for m in VIDEO_MODES)
    header += f" {'OCR calls C/B/M':>17} {'s':>6}"
    rows = [header, "-" * len(header)]
    for result in results:
        for video in result.videos:
            cells = [mode_cell(video.modes[m], len(video.plates), width) for m in VIDEO_MODES]
            calls = "/".join(str(video.modes[m].ocr_calls) for m in VIDEO_MODES)
            rows.append(
                f"{video.clip[:30]:<30} {video.frames:>6} {' '.join(video.plates)[:12]:<12} {' '.join(cells)} "
                f"{calls:>17} {fmt(video.seconds, 1):>6}" + (f"  FAILED: {video.error}" if video.error else "")
            )
        if result.videos:
            recall = " ".join(f"{fmt(result.video_recall(m)):<{width}}" for m in VIDEO_MODES)
            calls = "/".join(str(result.video_calls(m)) for m in VIDEO_MODES)
            rows.append(f"{result.name + ': plate recall':<50} {recall} {calls:>17}")
    rows.append("+ = every plate of the clip is in that output, - = not; C/B/M = consolidated/best single/majority")
    return "\n".join(rows)


def mode_cell(mode: ModeResult, plates: int, width: int) -> str:
    """A mode's output lines, joined, cut to fit, with '+' when every plate was read and '-' when not."""
    mark = "+" if mode.plates_read == plates else "-"
    text = " | ".join(mode.lines) or "(nothing)"
    return f"{mark} {text[: width - 2]:<{width - 2}}"


def report(results: list[SetResult], args: argparse.Namespace, settings: Settings, psm: int) -> dict[str, object]:
    """The JSON report: per-set scores and per-image details, and where and how they were measured."""
    import tesserocr

    from textwatch.tools.bench import machine

    return {
        "command": shlex.join(sys.argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": args.mode,
        "psm": psm,
        "limit": args.limit,
        "config": {"file": str(settings.source) if settings.source else None, "settings": settings.model_dump(mode="json")},
        "tesseract": tesserocr.tesseract_version().splitlines()[0],
        "machine": machine(),
        "sets": [
            {
                "set": r.name,
                "folder": str(r.eval_set.folder),
                "kind": r.eval_set.kind,
                "skipped_videos": r.eval_set.skipped_videos,
                "skipped_duplicates": r.eval_set.skipped_duplicates,
                **r.scores(),
                **r.video_scores(),
                "per_image": [asdict(image) for image in r.images],
                **({"per_clip": [asdict(video) for video in r.videos]} if r.videos else {}),
            }
            for r in results
        ],
    }


def write_json(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def write_chart(path: Path, results: list[SetResult], subtitle: str) -> None:
    """Horizontal bars of F1 (plate recall for plate sets), one per set, drawn with OpenCV."""
    rows = [r for r in results if r.images]
    label_w, bar_w, row_h, top = 300, 500, 34, 60
    image = np.full((top + row_h * len(rows) + 30, label_w + bar_w + 90, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, f"textwatch eval: F1 per set (* = plate recall), {subtitle}", (10, 30), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for index, result in enumerate(rows):
        y = top + index * row_h
        value = result.headline()
        label = result.name + (" *" if result.eval_set.kind == "plates" else "")
        cv2.putText(image, label, (10, y + 22), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        colour = (180, 120, 40) if result.eval_set.kind == "words" else (40, 140, 220)
        cv2.rectangle(image, (label_w, y + 6), (label_w + int(bar_w * (value or 0.0)), y + row_h - 6), colour, -1)
        cv2.putText(image, fmt(value, 2), (label_w + int(bar_w * (value or 0.0)) + 6, y + 22), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(image, (label_w, top), (label_w, top + row_h * len(rows)), (0, 0, 0), 1)
    cv2.line(image, (label_w + bar_w, top), (label_w + bar_w, top + row_h * len(rows)), (200, 200, 200), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise InputError(f"{path}: cannot write the chart (OpenCV refused the path or suffix)")
