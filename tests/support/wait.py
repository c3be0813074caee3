"""Waiting for a condition instead of sleeping a fixed time and then counting.

On a loaded machine a fixed sleep is sometimes too short (the count is not there
yet: a flaky failure) and always as long as on an idle one. Polling a condition
with a generous deadline is as fast as the machine allows and fails only when the
thing really does not happen. A sleep that lets time pass on purpose, to show that
something does NOT happen within it (no hot loop, nothing received), is not a wait
for a condition and stays a sleep, with a comment saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float, interval: float = 0.05, message: str | Callable[[], str] = ""
) -> T:
    """Poll `predicate()` every `interval` s until it returns something truthy, and return that.

    After `timeout` s the test fails with `message`: a string, or a function called at that
    moment (so it can show the latest state).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            text = message() if callable(message) else message
            pytest.fail(f"not within {timeout} s: {text or 'the condition never held'}")
        time.sleep(min(interval, left))
