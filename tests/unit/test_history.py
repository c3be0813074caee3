"""The history store and its queries on a real SQLite file: writes, search, retention, bad queries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from textwatch import wire
from textwatch.history.query import HistoryReader, HistoryUnavailable, QueryError, csv_text, parse_query
from textwatch.history.store import HistoryStore

JPEG = b"\xff\xd8" + bytes(20_000)  # the size of a crop picture; only the store's bytes matter here


def event(track: int, text: str, ts: float, kind: str = "changed") -> wire.TrackEvent:
    return wire.TrackEvent(camera="cam1", track=track, event=kind, ts=ts, box=(0, 0, 10, 10), text=text,
                           confidence=90.0, reads=1, first_seq=0, first_ts=ts, last_seq=0, last_ts=ts)


def fill(store: HistoryStore, texts_and_times: list[tuple[str, float]]) -> None:
    store.begin()
    for track, (text, ts) in enumerate(texts_and_times):
        row = store.upsert_track(event(track, text, ts))
        store.put_crop(row, ts, 100, JPEG)
    store.commit()


@pytest.fixture
def store(tmp_path: Path):
    store = HistoryStore(tmp_path / "history.sqlite3")
    yield store
    store.close()


def search(path: Path, **params: str) -> list[str]:
    with HistoryReader(path) as reader:
        return [hit.text for hit in reader.search(parse_query(params, 366), ["cam1"])]


def test_a_track_is_one_row_updated_by_its_events(store: HistoryStore) -> None:
    now = time.time()
    store.begin()
    first = store.upsert_track(event(1, "PLATE AB-12", now))
    again = store.upsert_track(event(1, "PLATE AB-123", now, kind="gone"))
    store.commit()
    assert first == again and store.rows() == 1
    assert search(store.path, q="AB-123") == ["PLATE AB-123"]


def test_substring_fuzzy_camera_and_csv(store: HistoryStore) -> None:
    now = time.time()
    fill(store, [("PLATE AB-123", now - 10), ("EXIT", now - 5), ("<script>alert(1)</script>", now)])
    assert search(store.path, q="ab-1") == ["PLATE AB-123"]  # case-folded substring (trigram index)
    assert search(store.path, q="XI") == ["EXIT"]  # shorter than a trigram
    assert search(store.path, q="AB1Z3", fuzzy="1") == ["PLATE AB-123"]  # one character off
    assert search(store.path) == ["<script>alert(1)</script>", "EXIT", "PLATE AB-123"]  # newest first
    with HistoryReader(store.path) as reader:
        hits = reader.search(parse_query({"q": "<script"}, 366))
        assert reader.crop(hits[0].id) == JPEG
        with pytest.raises(QueryError) as unknown:
            reader.search(parse_query({"camera": "nosuch"}, 366), ["cam1"])
    assert unknown.value.status == 404
    fill(store, [("=HYPERLINK(1)", now)])
    with HistoryReader(store.path) as reader:
        assert "'=HYPERLINK(1)" in csv_text(reader.search(parse_query({"q": "HYPER"}, 366)))


def test_retention_by_age_and_by_size_is_enforced_and_counted(store: HistoryStore) -> None:
    now = time.time()
    fill(store, [(f"OLD {i}", now - 40 * 86400 - i) for i in range(3)] + [(f"NEW {i}", now - i) for i in range(60)])
    result = store.enforce_retention(now, days=30, max_mb=0)
    assert (result.deleted_age, result.deleted_size, store.rows()) == (3, 0, 60)
    assert store.used_bytes() > 1024 * 1024  # 60 crops of 20 kB
    result = store.enforce_retention(now, days=30, max_mb=0.5)
    assert result.deleted_size > 0 and store.used_bytes() <= 0.5 * 1024 * 1024
    assert store.rows() == 60 - result.deleted_size
    oldest_left = search(store.path, limit="1000")[-1]
    assert oldest_left == f"NEW {59 - result.deleted_size}"  # the oldest went first
    assert (store.path.stat().st_size) <= 0.8 * 1024 * 1024  # freed pages went back (auto_vacuum)


@pytest.mark.parametrize("params, words", [
    ({"since": "0"}, "longer than"),
    ({"since": "2030-01-01", "until": "2029-01-01"}, "since is after until"),
    ({"until": "soon"}, "neither UNIX seconds nor"),
    ({"limit": "0"}, "limit"),
    ({"limit": "-5"}, "limit"),
    ({"fuzzy": "maybe"}, "fuzzy"),
    ({"camera": "../etc"}, "not a camera id"),
    ({"q": "x" * 201}, "at most 200"),
    ({"sort": "text"}, "unknown parameter"),
])
def test_bad_queries_are_one_clear_error(params: dict[str, str], words: str) -> None:
    with pytest.raises(QueryError) as err:
        parse_query(params, 366)
    assert words in str(err.value) and err.value.status == 400


def test_a_missing_database_says_so(tmp_path: Path) -> None:
    with pytest.raises(HistoryUnavailable, match="does not exist yet"):
        HistoryReader(tmp_path / "none.sqlite3")
