"""`textwatch history`: the history database from the terminal (the same queries as the view's REST API).

    textwatch history [-c CONFIG] [QUERY] [--fuzzy] [--camera C] [--since T] [--until T] [--limit N] [--csv | --json]

Prints one line per hit (last seen, camera, track, text, confidence), newest
first, or CSV, or one JSON object per line. A bad query is one line on stderr
and exit 2; a database that does not exist yet exits 66.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from textwatch.config import load_settings
from textwatch.errors import ExitCode
from textwatch.history.query import HistoryReader, HistoryUnavailable, QueryError, csv_text, hit_dict, iso, parse_query
from textwatch.history.store import database_path


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="?", default="", help="text to find (substring; empty = every track)")
    parser.add_argument("-c", "--config", help="the daemon's config file (default: built-in defaults)")
    parser.add_argument("--database", type=Path, help="the history file (default: history.database of the config)")
    parser.add_argument("--fuzzy", action="store_true", help="fuzzy match for plates: letters and digits, case-folded")
    parser.add_argument("--camera", help="only this camera")
    parser.add_argument("--since", help="from: UNIX seconds or ISO 8601 (default: view.max_range_days before --until)")
    parser.add_argument("--until", help="to: UNIX seconds or ISO 8601 (default: now)")
    parser.add_argument("--limit", default="100", help="most hits (1..1000, default 100)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true", help="CSV with a header line")
    output.add_argument("--json", action="store_true", help="one JSON object per hit")


def run_history(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    params = {"q": args.query, "fuzzy": "1" if args.fuzzy else "0", "limit": args.limit}
    params.update({key: value for key in ("camera", "since", "until") if (value := getattr(args, key))})
    try:
        query = parse_query(params, settings.view.max_range_days)
        with HistoryReader(args.database or database_path(settings.history)) as reader:
            hits = reader.search(query, [camera.id for camera in settings.cameras])
    except QueryError as err:
        print(f"textwatch history: {err}", file=sys.stderr)
        return int(ExitCode.USAGE)
    except HistoryUnavailable as err:
        print(f"textwatch history: {err}", file=sys.stderr)
        return int(ExitCode.NO_INPUT)
    if args.csv:
        sys.stdout.write(csv_text(hits))
    for hit in hits if not args.csv else []:
        if args.json:
            print(json.dumps(hit_dict(hit), ensure_ascii=False))
        else:
            print(f"{iso(hit.last_ts)} {hit.camera} {hit.track} {hit.text!r} ({hit.confidence:g})")
    return int(ExitCode.OK)
