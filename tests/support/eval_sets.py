"""Evaluation sets on disk (a folder with manifest.jsonl) and `textwatch eval` arguments."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from textwatch.tools import evaluate


def parse(*argv: str) -> argparse.Namespace:
    """`textwatch eval ARGV...` parsed as the CLI does."""
    parser = argparse.ArgumentParser(prog="textwatch eval")
    evaluate.add_arguments(parser)
    return parser.parse_args(list(argv))


def write_set(folder: Path, records: list[dict]) -> Path:
    """A set folder whose manifest.jsonl holds `records`, one JSON object a line."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder
