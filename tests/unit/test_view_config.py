"""[view] beyond loopback needs a token, like CURVE for the bus."""

from __future__ import annotations

import pytest

from textwatch.config import ViewSettings


def test_beyond_loopback_without_a_token_is_refused() -> None:
    with pytest.raises(ValueError, match="set view.token"):
        ViewSettings(listen="0.0.0.0:8088")
    assert ViewSettings(listen="0.0.0.0:8088", token="x" * 16).listen == "0.0.0.0:8088"
    assert ViewSettings(listen="127.0.0.1:8088").token == ""


def test_a_malformed_listen_is_refused() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        ViewSettings(listen="8088")
