"""One text per track: the reads of a tracked region voted into a consolidated text.

Tesseract reads the same plate as "AB-12-CD", "AB-I2-CD" and "A8-12-CD" in
consecutive frames. Publishing each read makes subscribers do the voting; this
module does it once, per track:

    1. A read below `FilterSettings.min_confidence` does not vote (counted).
    2. The track keeps its best `max_reads` reads (highest OCR confidence,
       the newer one on a tie), so memory is bounded however long it lives.
    3. Distinct texts are clustered single-link by `rapidfuzz.fuzz.ratio`
       (case and punctuation ignored) >= `similarity`: noisy variants of one
       text fall into one cluster and vote together.
    4. The heaviest cluster wins (weight = sum of its reads' confidences, then
       the number of reads). Its best read (highest confidence, ties by count)
       that `normalize()` accepts is the track's text: format and known-string
       filters apply to the winner after voting, so rejected variants still
       lend their weight. No acceptable read in that cluster = no text (None).

`Consolidator.add()` reports a `Change` only when the track's text changes, so
subscribers get one message per new text instead of one per frame;
`Consolidator.end()` gives the `Final` when the tracker says the track is gone
and forgets the track.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from rapidfuzz import fuzz, process, utils

from textwatch.config import ConsolidationSettings, FilterSettings
from textwatch.tracking.normalize import normalize


@dataclass(frozen=True)
class Read:
    text: str
    confidence: float  # OCR confidence, 0-100
    ts: float


@dataclass(frozen=True)
class Change:
    """A track's consolidated text changed (None: its reads no longer give an acceptable text)."""

    track: int
    text: str | None
    confidence: float
    reads: int  # reads that voted so far
    ts: float  # time of the read that caused the change


@dataclass(frozen=True)
class Final:
    """What a track read, once it is gone."""

    track: int
    text: str | None
    confidence: float
    reads: int
    first_ts: float
    last_ts: float


@dataclass
class TrackReads:
    """The kept reads of one track and what they consolidate to."""

    first_ts: float
    last_ts: float
    kept: list[Read] = field(default_factory=list)
    count: int = 0
    text: str | None = None
    confidence: float = 0.0


class Consolidator:
    """Votes each track's reads into one text; see the module docstring for the rule."""

    def __init__(self, settings: ConsolidationSettings, filters: FilterSettings) -> None:
        self.settings = settings
        self.filters = filters
        self.tracks: dict[int, TrackReads] = {}
        self.low_confidence = 0  # reads that did not vote

    def add(self, track_id: int, text: str, confidence: float, ts: float) -> Change | None:
        """Record one read of the track; a Change when its consolidated text is now different."""
        if not text.strip():
            raise ValueError(f"track {track_id}: an empty read is 'no text', not a read to vote with")
        if confidence < self.filters.min_confidence:
            self.low_confidence += 1
            return None
        state = self.tracks.setdefault(track_id, TrackReads(first_ts=ts, last_ts=ts))
        remember(state, Read(text.strip(), confidence, ts), self.settings.max_reads)
        winner = consolidate(state.kept, self.settings.similarity, self.filters)
        text_now, confidence_now = winner if winner is not None else (None, 0.0)
        state.confidence = confidence_now
        if text_now == state.text:
            return None
        state.text = text_now
        return Change(track_id, text_now, confidence_now, state.count, ts)

    def end(self, track_id: int) -> Final | None:
        """The track's final text, forgetting it; None for a track that never had a read that voted."""
        state = self.tracks.pop(track_id, None)
        if state is None:
            return None
        return Final(track_id, state.text, state.confidence, state.count, state.first_ts, state.last_ts)


def remember(state: TrackReads, read: Read, max_reads: int) -> None:
    """Add a read, dropping the weakest (lowest confidence, then oldest) beyond max_reads."""
    state.count += 1
    state.first_ts = min(state.first_ts, read.ts)
    state.last_ts = max(state.last_ts, read.ts)
    state.kept.append(read)
    if len(state.kept) > max_reads:
        weakest = min(range(len(state.kept)), key=lambda index: (state.kept[index].confidence, state.kept[index].ts))
        del state.kept[weakest]


def consolidate(reads: list[Read], similarity: float, filters: FilterSettings) -> tuple[str, float] | None:
    """The normalised text and confidence of the best acceptable read of the heaviest cluster, or None."""
    if not reads:
        return None
    texts = sorted({read.text for read in reads})
    clusters = cluster(texts, similarity)
    heaviest = max(clusters, key=lambda members: cluster_weight(members, reads))
    for text, confidence in ranked_texts(heaviest, reads):
        normalized = normalize(text, filters)
        if normalized is not None:
            return normalized, confidence
    return None


def cluster(texts: list[str], similarity: float) -> list[list[str]]:
    """Single-link clusters of the texts: connected components of 'ratio >= similarity'."""
    scores = process.cdist(texts, texts, scorer=fuzz.ratio, processor=utils.default_process)
    linked = np.asarray(scores) >= similarity
    unvisited = set(range(len(texts)))
    clusters: list[list[str]] = []
    while unvisited:
        stack = [unvisited.pop()]
        members: list[str] = []
        while stack:
            index = stack.pop()
            members.append(texts[index])
            neighbours = {int(other) for other in np.flatnonzero(linked[index])} & unvisited
            unvisited -= neighbours
            stack.extend(neighbours)
        clusters.append(sorted(members))
    return clusters


def cluster_weight(members: list[str], reads: list[Read]) -> tuple[float, int, str]:
    """Sum of confidences, then number of reads; the text itself only makes ties deterministic."""
    inside = [read for read in reads if read.text in members]
    return sum(read.confidence for read in inside), len(inside), min(members)


def ranked_texts(members: list[str], reads: list[Read]) -> list[tuple[str, float]]:
    """The cluster's distinct texts with their best confidence, best first (ties by count)."""
    best: dict[str, float] = {}
    counts: Counter[str] = Counter()
    for read in reads:
        if read.text in members:
            best[read.text] = max(best.get(read.text, read.confidence), read.confidence)
            counts[read.text] += 1
    order = sorted(members, key=lambda text: (-best[text], -counts[text], text))
    return [(text, best[text]) for text in order]
