"""The history database: every consolidated track, with its crop picture, in one SQLite file.

stdlib sqlite3, WAL mode (readers such as `textwatch view` and `textwatch
history` never block the writer, nor it them), one writer: the history process
(processes/history.py). Schema v1:

    tracks     one row per track of a camera: (camera, track, first_ts) is unique, since
               track ids start again at 1 when the daemon restarts. text, confidence, reads,
               first/last seen, box, state ("live" until its gone event, then "gone").
               Indexes on (camera, last_ts), (last_ts) and (text).
    tracks_fts FTS5 over tracks.text, trigram tokenizer: substring search in the index.
    crops      the best crop picture (JPEG) of a track: the largest one sent to OCR.
    meta       schema_version.

Every write happens in a transaction that commits whole (a killed writer loses
at most the batch it was writing; WAL recovery on the next open). Retention
deletes tracks last seen more than `retention_days` ago, then the oldest tracks
while the pages in use exceed `retention_mb`; both are counted. The file is
created with auto_vacuum = INCREMENTAL, so freed pages go back to the file
system instead of only to the free list.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from textwatch.config import HistorySettings
from textwatch.errors import ConfigError
from textwatch.wire import TrackEvent

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000
DELETE_CHUNK = 500  # tracks deleted per step while over retention_mb

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    id INTEGER PRIMARY KEY,
    camera TEXT NOT NULL,
    track INTEGER NOT NULL,
    first_ts REAL NOT NULL,
    last_ts REAL NOT NULL,
    text TEXT NOT NULL,
    confidence REAL NOT NULL,
    reads INTEGER NOT NULL,
    box TEXT,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    UNIQUE (camera, track, first_ts)
);
CREATE INDEX IF NOT EXISTS tracks_camera_time ON tracks (camera, last_ts);
CREATE INDEX IF NOT EXISTS tracks_time ON tracks (last_ts);
CREATE INDEX IF NOT EXISTS tracks_text ON tracks (text);
CREATE TABLE IF NOT EXISTS crops (
    track_id INTEGER PRIMARY KEY REFERENCES tracks (id) ON DELETE CASCADE,
    ts REAL NOT NULL,
    area INTEGER NOT NULL,
    jpeg BLOB NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS tracks_fts USING fts5 (text, content='tracks', content_rowid='id', tokenize='trigram');
CREATE TRIGGER IF NOT EXISTS tracks_ai AFTER INSERT ON tracks BEGIN
    INSERT INTO tracks_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS tracks_ad AFTER DELETE ON tracks BEGIN
    INSERT INTO tracks_fts (tracks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER IF NOT EXISTS tracks_au AFTER UPDATE OF text ON tracks BEGIN
    INSERT INTO tracks_fts (tracks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO tracks_fts (rowid, text) VALUES (new.id, new.text);
END;
"""


def database_path(settings: HistorySettings) -> Path:
    """history.database, else $STATE_DIRECTORY/history.sqlite3 (systemd StateDirectory=), else
    $XDG_STATE_HOME or ~/.local/state, /textwatch/history.sqlite3."""
    if settings.database is not None:
        return Path(settings.database)
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "history.sqlite3"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "textwatch" / "history.sqlite3"


@dataclass
class RetentionResult:
    deleted_age: int = 0
    deleted_size: int = 0


class HistoryStore:
    """The writer's connection: schema, upserts of track events, crops, retention."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            self._prepare()
        except sqlite3.Error as err:
            raise ConfigError(f"history database {self.path}: {err}") from None
        except OSError as err:
            raise ConfigError(f"history database {self.path}: {err.strerror}") from None

    def _prepare(self) -> None:
        """auto_vacuum must be chosen before the first table exists; WAL once per file; schema if new."""
        self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a committed batch survives a killed process
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.executescript(SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            raise ConfigError(f"history database {self.path} has schema {row[0]}, this textwatch writes {SCHEMA_VERSION}")

    # ------------------------------------------------------------ writing (inside `transaction`)

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def upsert_track(self, event: TrackEvent) -> int:
        """Insert or update the track's row from one track event; its row id."""
        box = json.dumps(list(event.box)) if event.box is not None else None
        state = "gone" if event.event == "gone" else "live"
        row = self.db.execute(
            """INSERT INTO tracks (camera, track, first_ts, last_ts, text, confidence, reads, box, state, reason)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (camera, track, first_ts) DO UPDATE SET
                 last_ts = max(last_ts, excluded.last_ts), text = excluded.text, confidence = excluded.confidence,
                 reads = excluded.reads, box = coalesce(excluded.box, box), state = excluded.state,
                 reason = excluded.reason
               RETURNING id""",
            (event.camera, event.track, event.first_ts, event.last_ts, event.text, event.confidence, event.reads,
             box, state, event.reason),
        ).fetchone()
        return int(row[0])

    def put_crop(self, track_id: int, ts: float, area: int, jpeg: bytes) -> bool:
        """Keep the larger of this crop and the one stored (the track's best view); True if stored."""
        cursor = self.db.execute(
            """INSERT INTO crops (track_id, ts, area, jpeg) VALUES (?, ?, ?, ?)
               ON CONFLICT (track_id) DO UPDATE SET ts = excluded.ts, area = excluded.area, jpeg = excluded.jpeg
               WHERE excluded.area >= crops.area""",
            (track_id, ts, area, jpeg),
        )
        return cursor.rowcount > 0

    # ------------------------------------------------------------ retention

    def used_bytes(self) -> int:
        """Bytes in pages that hold data (the file minus its free list)."""
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def rows(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM tracks").fetchone()[0])

    def enforce_retention(self, now: float, days: float, max_mb: float) -> RetentionResult:
        """Delete by age, then oldest-first while over `max_mb`; each in its own transaction."""
        result = RetentionResult()
        if days > 0:
            self.begin()
            result.deleted_age = self.db.execute("DELETE FROM tracks WHERE last_ts < ?", (now - days * 86400,)).rowcount
            self.commit()
        limit = int(max_mb * 1024 * 1024)
        while max_mb > 0 and (used := self.used_bytes()) > limit:
            self.begin()
            deleted = self.db.execute(
                "DELETE FROM tracks WHERE id IN (SELECT id FROM tracks ORDER BY last_ts LIMIT ?)",
                (self._rows_to_free(used - limit, used),),
            ).rowcount
            self.commit()
            result.deleted_size += deleted
            if deleted == 0:
                break
        if result.deleted_age or result.deleted_size:
            self.db.execute("PRAGMA incremental_vacuum")
        return result

    def _rows_to_free(self, excess: int, used: int) -> int:
        """About how many of the oldest rows hold `excess` bytes (at least 1, at most DELETE_CHUNK)."""
        per_row = max(1, used // max(1, self.rows()))
        return max(1, min(DELETE_CHUNK, -(-excess // per_row)))

    def close(self) -> None:
        self.rollback()
        self.db.close()
