"""PP-OCRv6's detector as the teacher of ours: line boxes for every real training image.

Why a teacher: the real training sets annotate only part of their text.
ICDAR 2015 marks a word legible or `###` and leaves much small text in the
background unmarked; a detector trained on it is taught that unmarked text is
background, which is the recall we lack on forms and receipts. PP-OCRv6's
small DB detector (detect/dbnet.py, the same code as `detector.model =
"ppocr"`) finds that text; its boxes join the ground truth by one rule
(`realdata.merge_teacher`, written down in docs/detector.md; the
thresholds are realdata's NEW_OVERLAP and COVERED):

1. ground truth wins: every annotated line stays a line and every `###` region
   stays ignored;
2. a teacher box that no annotation touches (at most `NEW_OVERLAP` of its area
   overlaps lines or ignored regions) is a line the annotators left out: it
   becomes a line;
3. a teacher box that overlaps annotations, but is not mostly inside them
   (less than `COVERED` of its area), becomes an ignore region: the
   annotators and the teacher disagree about what the line is, so the loss
   neither rewards nor punishes a box there;
4. a teacher box mostly inside annotations says nothing new and is dropped.

Labels are computed once (`textwatch teacher --out runs/teacher`, about a
second per image on 2 cores) into `<out>/<set>.jsonl`, one line per image, and
the recipe points at them (`[data.real] teacher_dir`). Only ../shared/train is
ever labelled: never an image of ../shared/eval.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Final

from textwatch.config import load_settings
from textwatch.errors import InputMissing
from textwatch.train.realdata import ICDAR, SROIE, decode, shared_train_root

SETS: Final = (ICDAR, SROIE)
TEACHER: Final = "PP-OCRv6_det_small"


def label_set(root: Path, name: str, out: Path, limit: int | None = None) -> int:
    """Label every image of `root/name/manifest.jsonl` into `out/name.jsonl`; returns the count.

    Written to a temporary file and renamed at the end, so an interrupted run
    never leaves a half file that training would take for the whole set."""
    from textwatch.detect.dbnet import PaddleDetector

    manifest = root / name / "manifest.jsonl"
    if not manifest.is_file():
        raise InputMissing(f"training set {name!r} has no manifest at {manifest}")
    settings = load_settings(None).detector.model_copy(update={"model": "ppocr"})
    detector = PaddleDetector(settings)
    records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = records[:limit] if limit else records
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f"{name}.jsonl.partial"
    with partial.open("w", encoding="utf-8") as fh:
        for n, rec in enumerate(records, 1):
            image = decode(root / name / rec["image"])
            boxes = [[*d.box, round(d.confidence, 4)] for d in detector.detect(image)]
            fh.write(json.dumps({"image": rec["image"], "width": image.shape[1], "height": image.shape[0],
                                 "teacher": TEACHER, "boxes": boxes}) + "\n")
            if n % 50 == 0:
                print(f"{name}: {n}/{len(records)}", file=sys.stderr, flush=True)
    partial.replace(out / f"{name}.jsonl")
    return len(records)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/teacher"), help="folder for <set>.jsonl label files")
    parser.add_argument("--limit", type=int, default=None, help="label only the first N images of each set")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS), help="which ../shared/train sets")


def run(args: argparse.Namespace) -> int:
    """`textwatch teacher`: label ../shared/train's real sets with PP-OCRv6's detector."""
    root = shared_train_root()
    if root is None:
        raise InputMissing("../shared/train is absent: there is nothing to label")
    for name in args.sets:
        start = time.perf_counter()
        count = label_set(root, name, args.out, args.limit)
        print(f"{name}: {count} images labelled in {time.perf_counter() - start:.0f} s -> {args.out / (name + '.jsonl')}")
    return 0
