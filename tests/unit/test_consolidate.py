"""Voting a track's reads into one text, and the per-camera normalisation and filters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from textwatch.tracking.consolidate import Change, ConsolidationSettings, Consolidator, Final
from textwatch.tracking.normalize import FilterSettings, masked, normalize, too_small

PLATE = r"[A-Z]{2}-\d{2}-[A-Z]{2}"


def consolidator(**filters: object) -> Consolidator:
    return Consolidator(ConsolidationSettings(), FilterSettings.model_validate(filters))


def test_noisy_reads_consolidate_to_the_common_text() -> None:
    votes = consolidator()
    for ts, (text, confidence) in enumerate([("AB-12-CD", 85), ("AB-I2-CD", 80), ("A8-12-CD", 82), ("AB-12-CD", 85)]):
        votes.add(1, text, confidence, float(ts))
    assert votes.end(1) == Final(1, "AB-12-CD", 85, 4, 0.0, 3.0)
    assert votes.tracks == {}


def test_change_fires_only_when_the_consolidated_text_changes() -> None:
    votes = consolidator()
    reads = [
        ("AB-12-CD", 80),  # first text
        ("AB-12-CD", 80),
        ("AB-I2-CD", 70),  # a variant in the same cluster, weaker: no change
        ("EXIT", 90),  # another cluster, lighter (90 < 230): no change
        ("EXIT", 90),
        ("EXIT", 90),  # 270 > 230: the track now reads EXIT
        ("EXlT", 60),  # still EXIT
    ]
    changes = [votes.add(7, text, confidence, float(ts)) for ts, (text, confidence) in enumerate(reads)]
    assert changes == [Change(7, "AB-12-CD", 80, 1, 0.0), None, None, None, None, Change(7, "EXIT", 90, 6, 5.0), None]


def test_plate_format_fixes_confusable_characters() -> None:
    plates = FilterSettings(format=PLATE)
    assert normalize("AB-I2-CD", plates) == "AB-12-CD"
    assert normalize("A8-12-CD", plates) == "AB-12-CD"
    assert normalize("0B-1Z-C0 ", plates) == "OB-12-CO"
    assert normalize("AB-12-CD", plates) == "AB-12-CD"
    assert normalize("AB-12-CDX", plates) is None
    assert normalize("   ", plates) is None
    assert normalize("AB-I2-CD", FilterSettings()) == "AB-I2-CD"  # no format: nothing to fix towards
    assert normalize("AB-I2-CD", FilterSettings(format=PLATE, replacements=[])) is None


def test_format_applies_to_the_winner_after_voting() -> None:
    """Only variants that break the format were read often; they still vote for the cluster, whose best valid read wins."""
    votes = consolidator(format=PLATE)
    for ts, (text, confidence) in enumerate([("AB-12-CD.", 95), ("AB-12-CD.", 95), ("AB-I2-CD", 60), ("EXIT", 90), ("EXIT", 90)]):
        votes.add(1, text, confidence, float(ts))
    final = votes.end(1)
    assert final is not None and (final.text, final.confidence) == ("AB-12-CD", 60)


def test_track_whose_reads_never_fit_the_format_has_no_text() -> None:
    votes = consolidator(format=PLATE)
    assert votes.add(1, "EXIT", 90, 0.0) is None
    assert votes.end(1) == Final(1, None, 0.0, 1, 0.0, 0.0)


def test_known_strings_replace_close_reads() -> None:
    known = FilterSettings(known=["AB-12-CD", "KL-77-MN"], max_edit_distance=1)
    assert normalize("AB-12-C0", known) == "AB-12-CD"
    assert normalize("KL-77-M", known) == "KL-77-MN"
    assert normalize("XY-99-ZZ", known) == "XY-99-ZZ"
    assert normalize("AB-12-C0", FilterSettings(known=["AB-12-CD"], max_edit_distance=0)) == "AB-12-C0"
    # A known string rescues a read the format alone rejects.
    assert normalize("AB-12-C", FilterSettings(format=PLATE, known=["AB-12-CD"])) == "AB-12-CD"


def test_masks_ignore_boxes_whose_centre_is_inside() -> None:
    overlay = FilterSettings(masks=[[(0, 0), (300, 0), (300, 40), (0, 40)]])  # a timestamp overlay
    assert masked((10, 5, 250, 35), overlay)
    assert masked((200, 30, 400, 50), overlay)  # centre (300, 40) on the corner
    assert not masked((10, 100, 250, 130), overlay)
    assert not masked((10, 5, 250, 35), FilterSettings())
    with pytest.raises(ValidationError):
        FilterSettings.model_validate({"masks": [[[0, 0], [10, 10]]]})


def test_min_box_height_and_min_confidence() -> None:
    assert too_small((0, 0, 100, 9), FilterSettings(min_box_height=10))
    assert not too_small((0, 0, 100, 10), FilterSettings(min_box_height=10))
    votes = consolidator(min_confidence=50)
    assert votes.add(1, "AB-12-CD", 40, 0.0) is None
    assert votes.low_confidence == 1 and votes.end(1) is None


def test_memory_is_bounded_to_the_best_reads() -> None:
    votes = Consolidator(ConsolidationSettings(max_reads=5), FilterSettings())
    for ts in range(100):
        votes.add(3, "AB-12-CD" if ts % 10 else "ZZ-99-QQ", float(ts % 50), float(ts))
    kept = votes.tracks[3].kept
    assert len(kept) == 5
    assert sorted(read.confidence for read in kept) == [47, 48, 48, 49, 49]
    assert votes.end(3) == Final(3, "AB-12-CD", 49, 100, 0.0, 99.0)
    assert 3 not in votes.tracks


def test_empty_read_is_an_error_and_unknown_track_ends_with_none() -> None:
    votes = consolidator()
    with pytest.raises(ValueError, match="empty read"):
        votes.add(1, "  ", 90, 0.0)
    assert votes.end(42) is None


def test_filter_settings_validate_format_and_replacements() -> None:
    with pytest.raises(ValidationError, match="regular expression"):
        FilterSettings(format="[A-Z")
    with pytest.raises(ValidationError, match="single characters"):
        FilterSettings.model_validate({"replacements": [["OO", "0"]]})
