"""`textwatch image`: the seed's job, done properly, over one or many images.

Output: the legible lines in reading order, one per line (stdout or -o FILE).
With several images each image's lines follow a `# <path>` header line. With
--json, one JSON object per region (including empty and failed readings). A bad
file is reported on stderr and counted; the others are still processed; the
exit code is then that of the worst failure (see errors.ExitCode).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from textwatch.config import Settings
from textwatch.errors import ExitCode, InputError, OutputError, TextwatchError
from textwatch.tools.oneshot import OneShot, Region, annotate, expand_inputs, load_image, text_lines


def run_images(args: argparse.Namespace, settings: Settings) -> int:
    paths = expand_inputs(args.paths)
    if not paths:
        raise InputError("no image files found in " + ", ".join(map(str, args.paths)))
    if args.annotate:  # its folder is made (or refused) before any image is read
        annotation_path(args.annotate, paths[0], len(paths) > 1)
    reader = OneShot(settings)
    failures: list[TextwatchError] = []
    out = open_output(args.output) if args.output else sys.stdout
    try:
        for path in paths:
            try:
                image = load_image(path, settings.image.max_pixels)
            except TextwatchError as err:
                print(f"textwatch: {err}", file=sys.stderr)
                failures.append(err)
                continue
            regions = reader.read(image)
            write_result(out, path, regions, several=len(paths) > 1, as_json=args.json)
            if args.annotate:
                write_annotation(annotation_path(args.annotate, path, len(paths) > 1), annotate(image, regions))
    finally:
        reader.close()
        if args.output:
            out.close()
    return summarise(failures, len(paths))


def open_output(path: Path) -> TextIO:
    """The -o file, opened for writing; OutputError (exit 73) naming it when it cannot be.

    Regression (issue 22): an unwritable -o file exited 70 "internal error" with a traceback.
    """
    try:
        return path.open("w", encoding="utf-8")
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from None


def write_annotation(path: Path, picture: np.ndarray) -> None:
    """Write the --annotate PNG; OutputError when its folder or file cannot be written."""
    try:
        written = cv2.imwrite(str(path), picture)
    except cv2.error:
        written = False
    if not written:
        raise OutputError(f"cannot write the annotated picture {path}")


def write_result(out: TextIO, path: Path, regions: list[Region], several: bool, as_json: bool) -> None:
    if as_json:
        for region in regions:
            out.write(json.dumps({"image": str(path), **region.as_dict()}, ensure_ascii=False) + "\n")
        return
    if several:
        out.write(f"# {path}\n")
    for line in text_lines(regions):
        out.write(line + "\n")
    out.flush()


def annotation_path(target: Path, image: Path, several: bool) -> Path:
    folder = target if several else target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot make the folder {folder}: {err.strerror or err}") from None
    return target / f"{image.stem}.annotated.png" if several else target


def summarise(failures: list[TextwatchError], total: int) -> int:
    if not failures:
        return ExitCode.OK
    if total > 1:
        print(f"textwatch: {len(failures)} of {total} images failed", file=sys.stderr)
    return int(max(err.exit_code for err in failures))
