"""support.wait.wait_until: returns as soon as the condition holds, fails clearly when it never does."""

from __future__ import annotations

import itertools
import time

import pytest

from support.wait import wait_until


def test_returns_the_first_truthy_value_as_soon_as_there_is_one() -> None:
    calls = itertools.count()
    started = time.monotonic()
    assert wait_until(lambda: next(calls) >= 3 and "ready", timeout=5, interval=0.01) == "ready"
    assert time.monotonic() - started < 1


def test_fails_after_the_timeout_with_the_message_of_that_moment() -> None:
    state = {"seen": 0}

    def never() -> bool:
        state["seen"] += 1
        return False

    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"not within 0.2 s: polled [0-9]+ times"):
        wait_until(never, timeout=0.2, interval=0.01, message=lambda: f"polled {state['seen']} times")
    assert 0.2 <= time.monotonic() - started < 2
    assert state["seen"] > 2
