"""Secrets in camera URLs never reach a log line, a bus message or `check`'s output."""

from __future__ import annotations

import pytest

from textwatch.log import redact_url


@pytest.mark.parametrize(
    "url, shown",
    [
        ("rtsp://admin:hunter2@10.0.0.7:554/stream1", "rtsp://***@10.0.0.7:554/stream1"),
        # Regression: the userinfo ended at the FIRST "@", so the tail of such a password was shown.
        ("rtsp://admin:PW1@PW2x@10.0.0.7/live", "rtsp://***@10.0.0.7/live"),
        # Regression: credentials in a query string (MJPEG and snapshot URLs) were shown in clear.
        ("http://cam/video.cgi?user=admin&pwd=hunter2&res=hd", "http://cam/video.cgi?user=admin&pwd=***&res=hd"),
        ("http://cam/mjpg?Password=hunter2", "http://cam/mjpg?Password=***"),
        ("https://cam/live?token=abc.def#frag", "https://cam/live?token=***#frag"),
        ("rtsp://10.0.0.7/stream@2", "rtsp://10.0.0.7/stream@2"),  # "@" in the path is no userinfo
        ("/srv/videos/gate@night.mp4", "/srv/videos/gate@night.mp4"),
        # Regression (issue 22): check printed a mistyped URL (one slash, none) with its password.
        ("rtsp:/admin:hunter2@10.0.0.7/live", "rtsp:/***@10.0.0.7/live"),
        ("rtsp:admin:hunter2@10.0.0.7/live", "rtsp:***@10.0.0.7/live"),
    ],
)
def test_credentials_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(f"cannot open {url}: refused") == f"cannot open {shown}: refused"
