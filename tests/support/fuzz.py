"""Hypothesis helpers of the fuzz tests (tests/unit/test_fuzz_*.py): the settings, hostile values, an allocation meter.

FUZZ caps every fuzz test at ~200 examples so CI stays fast; TEXTWATCH_FUZZ_EXAMPLES raises it for
a long local run (docs/operations.md, "Fuzzing"). No example database is kept: CI starts from a
fresh clone anyway, and a failure prints the `@reproduce_failure` line to pin it.
"""

from __future__ import annotations

import math
import os
import tracemalloc
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("TEXTWATCH_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a shared 2-core machine makes per-example timings meaningless
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# Values a hostile peer picks on purpose: type confusions, integer and float extremes (JSON can carry
# integers of up to 4300 digits, which do not fit a float), long and odd strings, deep and wide nesting.
# No lone surrogates: UTF-8 bytes cannot hold one, and wire._loads refuses a JSON escape of one, so no
# parser is ever handed one (the byte-level fuzz sends them as escapes).
DEEP_LIST: list[Any] = []
for _ in range(5_000):
    DEEP_LIST = [DEEP_LIST]
HOSTILE_SCALARS = [
    None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63) - 1, 2**64, 10**9, 10**30, -(10**30), int("9" * 4000),
    0.0, -0.0, 1.5, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf,
    "", " ", "x" * 100_000, "\x00", "é" * 1000, "\U0001f600", "1", "NaN", "text.cam", "stats", "../../etc",
]
HOSTILE_VALUES = HOSTILE_SCALARS + [
    [], {}, [0] * 100_000, [10**9] * 4, [-1] * 4, [10**30] * 3, [0, 0, 3], [1, 1, 1, 1, 1], [True] * 4,
    [1.5] * 4, ["1"] * 4, {"a": 1}, {str(i): i for i in range(10_000)}, DEEP_LIST, [[1, 2, 3, 4]],
]


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Anything json.loads can return, plus the NaN/inf and huge integers a Python peer could build."""
    scalars = (
        st.none() | st.booleans()
        | st.integers() | st.integers(min_value=-(10**40), max_value=10**40) | st.sampled_from([10**400, -(10**400)])
        | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40)
        | st.sampled_from(HOSTILE_SCALARS)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
        max_leaves=max_leaves,
    )


def mutated(valid: dict[str, Any], extra_keys: list[str] = ()) -> st.SearchStrategy[dict[str, Any]]:
    """`valid` with one field (or one of `extra_keys`) set to a hostile value, removed, or renamed."""
    keys = sorted(valid) + list(extra_keys)

    def change(key: str, how: str, value: Any) -> dict[str, Any]:
        out = dict(valid)
        if how == "drop":
            out.pop(key, None)
        else:
            out[key] = value
        return out

    return st.builds(
        change, st.sampled_from(keys), st.sampled_from(["set", "set", "set", "drop"]),
        st.sampled_from(HOSTILE_VALUES) | json_values(8),
    )


def peak_bytes(call: Callable[[], Any]) -> int:
    """The peak of Python allocations made while `call()` runs (its arguments exist before; raises pass through)."""
    tracing = tracemalloc.is_tracing()  # python -X tracemalloc: leave it on afterwards
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        try:
            call()
        except Exception:  # noqa: BLE001 - only its memory is measured here; the callers judge the outcome
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not tracing:
            tracemalloc.stop()
    return peak - start
