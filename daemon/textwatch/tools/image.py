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

from textwatch.config import Settings
from textwatch.errors import ExitCode, InputError, TextwatchError
from textwatch.tools.oneshot import OneShot, Region, annotate, expand_inputs, load_image, text_lines


def run_images(args: argparse.Namespace, settings: Settings) -> int:
    paths = expand_inputs(args.paths)
    if not paths:
        raise InputError("no image files found in " + ", ".join(map(str, args.paths)))
    reader = OneShot(settings)
    failures: list[TextwatchError] = []
    out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
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
                cv2.imwrite(str(annotation_path(args.annotate, path, len(paths) > 1)), annotate(image, regions))
    finally:
        reader.close()
        if args.output:
            out.close()
    return summarise(failures, len(paths))


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
    if not several:
        target.parent.mkdir(parents=True, exist_ok=True)
        return target
    target.mkdir(parents=True, exist_ok=True)
    return target / f"{image.stem}.annotated.png"


def summarise(failures: list[TextwatchError], total: int) -> int:
    if not failures:
        return ExitCode.OK
    if total > 1:
        print(f"textwatch: {len(failures)} of {total} images failed", file=sys.stderr)
    return int(max(err.exit_code for err in failures))
