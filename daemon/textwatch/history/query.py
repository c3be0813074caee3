"""Reading the history: one query language for the web view's REST endpoint and `textwatch history`.

A query is parsed from plain strings (URL parameters or command-line options)
into a checked `HistoryQuery`; anything wrong is a `QueryError` with one line
saying what (the view answers it as 400, or 404 for an unknown camera; the CLI
prints it and exits 2). Parameters:

    q        text to find (at most 200 characters); empty = every track
    fuzzy    0/1: substring search (default), or fuzzy for plates: letters and digits
             only, case-folded, scored with rapidfuzz's partial ratio (>= FUZZY_MIN_SCORE)
    camera   one camera id (known to the config or present in the database)
    since    start of the time range: UNIX seconds or ISO 8601 (local time unless it says)
    until    end of the time range (default now); until - since at most view.max_range_days
    limit    hits to return, 1..MAX_LIMIT (default 100), newest first (fuzzy: best first)

The database is opened read-only (`mode=ro`); WAL lets this read while the
history process writes.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from rapidfuzz import fuzz

MAX_QUERY_CHARS = 200
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
FUZZY_MIN_SCORE = 70.0
FUZZY_SCAN = 20_000  # newest tracks in range scored by a fuzzy query
PARAMETERS = ("q", "fuzzy", "camera", "since", "until", "limit", "token")
CAMERA_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CSV_COLUMNS = ("id", "camera", "track", "text", "confidence", "reads", "first_seen", "last_seen", "box", "state")


class QueryError(ValueError):
    """A query that cannot be answered as asked; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class HistoryUnavailable(RuntimeError):
    """The database does not exist (yet) or cannot be read."""


@dataclass(frozen=True)
class HistoryQuery:
    q: str
    fuzzy: bool
    camera: str | None
    since: float
    until: float
    limit: int


@dataclass(frozen=True)
class Hit:
    id: int
    camera: str
    track: int
    text: str
    confidence: float
    reads: int
    first_ts: float
    last_ts: float
    box: list[int] | None
    state: str
    has_crop: bool
    score: float | None = None


def parse_query(params: Mapping[str, str], max_range_days: float, now: float | None = None) -> HistoryQuery:
    """A checked query from string parameters; QueryError (400) naming the first bad one."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0]!r} (known: {', '.join(PARAMETERS[:-1])})")
    now = time.time() if now is None else now
    q = params.get("q", "").strip()
    if len(q) > MAX_QUERY_CHARS:
        raise QueryError(f"q has {len(q)} characters (at most {MAX_QUERY_CHARS})")
    camera = params.get("camera") or None
    if camera is not None and not CAMERA_ID.match(camera):
        raise QueryError(f"camera {camera[:80]!r} is not a camera id ([A-Za-z0-9_-], 1-64 characters)")
    until = parse_time(params["until"], "until") if params.get("until") else now
    since = parse_time(params["since"], "since") if params.get("since") else until - max_range_days * 86400
    if since > until:
        raise QueryError("since is after until")
    if until - since > max_range_days * 86400 + 1:
        raise QueryError(f"time range of {(until - since) / 86400:.0f} days is longer than {max_range_days:g} (view.max_range_days)")
    return HistoryQuery(q=q, fuzzy=parse_flag(params.get("fuzzy", "0")), camera=camera, since=since, until=until,
                        limit=parse_limit(params.get("limit", str(DEFAULT_LIMIT))))


def parse_time(value: str, name: str) -> float:
    """UNIX seconds or ISO 8601 (naive = local time); QueryError otherwise."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = datetime.fromisoformat(value).timestamp()
        except ValueError:
            raise QueryError(f"{name} {value[:40]!r} is neither UNIX seconds nor an ISO 8601 time") from None
    if not 0 <= seconds < 1e11:
        raise QueryError(f"{name} {value[:40]!r} is out of range")
    return seconds


def parse_flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise QueryError(f"fuzzy {value[:20]!r} is not 0 or 1")


def parse_limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise QueryError(f"limit {value[:20]!r} is not a whole number in 1..{MAX_LIMIT}")
    return int(value)


def plate_key(text: str) -> str:
    """What a fuzzy plate search compares: letters and digits, upper case ("ab-12 3" -> "AB123")."""
    return "".join(ch for ch in text.upper() if ch.isalnum())


class HistoryReader:
    """A read-only connection to the history database (one per request or command)."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise HistoryUnavailable(f"history database {path} does not exist yet (is [history] enabled and the daemon running?)")
        try:
            self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
            self.db.execute("SELECT 1 FROM tracks LIMIT 1")
        except sqlite3.Error as err:
            raise HistoryUnavailable(f"history database {path}: {err}") from None

    def search(self, query: HistoryQuery, known_cameras: Iterable[str] = ()) -> list[Hit]:
        """The hits of `query`; QueryError(404) for a camera neither configured nor in the database."""
        if query.camera is not None and query.camera not in set(known_cameras) and not self.has_camera(query.camera):
            raise QueryError(f"unknown camera {query.camera!r}", status=404)
        where, args = ["t.last_ts >= ?", "t.first_ts <= ?"], [query.since, query.until]
        if query.camera is not None:
            where.append("t.camera = ?")
            args.append(query.camera)
        if query.q and not query.fuzzy:
            if len(query.q) >= 3:  # the trigram index finds any substring of 3 characters or more
                where.append("t.id IN (SELECT rowid FROM tracks_fts WHERE tracks_fts MATCH ?)")
                args.append('"' + query.q.replace('"', '""') + '"')
            else:
                where.append("instr(lower(t.text), lower(?)) > 0")
                args.append(query.q)
        limit = FUZZY_SCAN if query.fuzzy and query.q else query.limit
        rows = self.db.execute(
            f"""SELECT t.id, t.camera, t.track, t.text, t.confidence, t.reads, t.first_ts, t.last_ts, t.box, t.state,
                       c.track_id IS NOT NULL
                FROM tracks t LEFT JOIN crops c ON c.track_id = t.id
                WHERE {' AND '.join(where)} ORDER BY t.last_ts DESC LIMIT ?""",
            (*args, limit),
        ).fetchall()
        hits = [Hit(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]) if r[8] else None, r[9], bool(r[10]))
                for r in rows]
        return rank_fuzzy(hits, query.q, query.limit) if query.fuzzy and query.q else hits

    def has_camera(self, camera: str) -> bool:
        return self.db.execute("SELECT 1 FROM tracks WHERE camera = ? LIMIT 1", (camera,)).fetchone() is not None

    def cameras(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT DISTINCT camera FROM tracks ORDER BY camera")]

    def crop(self, track_id: int) -> bytes | None:
        row = self.db.execute("SELECT jpeg FROM crops WHERE track_id = ?", (track_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rank_fuzzy(hits: list[Hit], q: str, limit: int) -> list[Hit]:
    """Hits whose plate key is close to q's (partial ratio >= FUZZY_MIN_SCORE), best first, then newest."""
    key = plate_key(q)
    if not key:
        return []
    scored = [(fuzz.partial_ratio(key, plate_key(hit.text)), hit) for hit in hits]
    kept = [(score, hit) for score, hit in scored if score >= FUZZY_MIN_SCORE]
    kept.sort(key=lambda pair: (-pair[0], -pair[1].last_ts))
    return [Hit(**{**asdict(hit), "score": round(score, 1)}) for score, hit in kept[:limit]]


def hit_dict(hit: Hit) -> dict[str, object]:
    """A hit as JSON: the row plus `crop` (the path of its picture, or null) and ISO times."""
    body: dict[str, object] = asdict(hit)
    body["crop"] = f"/api/history/{hit.id}/crop.jpg" if hit.has_crop else None
    body["first_seen"], body["last_seen"] = iso(hit.first_ts), iso(hit.last_ts)
    return body


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def csv_text(hits: list[Hit]) -> str:
    """The hits as CSV (RFC 4180); a cell starting with = + - @ is prefixed with ' so a spreadsheet
    never runs an OCR'd formula."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for hit in hits:
        writer.writerow([hit.id, hit.camera, hit.track, _cell(hit.text), hit.confidence, hit.reads, iso(hit.first_ts),
                         iso(hit.last_ts), json.dumps(hit.box) if hit.box else "", hit.state])
    return out.getvalue()


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
