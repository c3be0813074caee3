"""The config loader fuzzed with Hypothesis (issue 22): any file gives Settings or ConfigError, one line,
never another exception (no pydantic ValidationError, RecursionError, UnicodeDecodeError, OverflowError...).

Inputs: arbitrary TOML documents written by tomli-w from generated dicts (keys mostly the schema's, so
validation is reached), the valid default config with one key set to a hostile value (written by tomli-w,
or spliced in as raw TOML for what no writer makes: 5000-deep arrays, 5000-digit integers), and raw
text and bytes that are not TOML. docs/operations.md, "Fuzzing", says how to run long.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import example, given
from hypothesis import strategies as st

from support.fuzz import FUZZ
from textwatch.config import Settings, load_settings, tcp_endpoint
from textwatch.errors import ConfigError

PLACEHOLDER = "@@HOSTILE@@"


def _without_none(value: Any) -> Any:
    """TOML has no null: the default config's unset keys are left out, as in config/textwatch.toml."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


DEFAULT = _without_none(Settings().model_dump(mode="json", exclude={"source"}))


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of the default config, sections and leaves, the first camera's included."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        found += _paths(value[0], (*prefix, 0))
    return found


PATHS = _paths(DEFAULT)
SCHEMA_KEYS = sorted({part for path in PATHS for part in path if isinstance(part, str)})
# TOML a writer would not make, spliced in raw: too deep, too long, out of range, odd escapes and types.
RAW_TOML = [
    "[" * 5000 + "]" * 5000, "{a=" * 3000 + "1" + "}" * 3000, "9" * 5000, "-" + "9" * 4400, "9" * 4000,
    "nan", "-inf", "1e999", "0x7fffffffffffffffffff", "1979-05-27T07:32:00Z", "07:32:00", "1979-05-27",
    '"\\u0000"', '"a\\u0000b"', '"~nosuchuser-textwatch/x"', '"~"', '"a{99999999999}"', '"a{1,99999999999}"',
    '"' + "(" * 3000 + ")" * 3000 + '"', '"[" ', '"\\ud800"', '"""a\nb"""', "'''\n'''", '"' + "x" * 100_000 + '"',
    '"tcp://127.0.0.1:\\u0663\\u0663\\u0663\\u0663"', '"tcp://127.0.0.1:5999\\n"', '"127.0.0.1:9108\\n"',
    '"tcp://127.0.0.1 :5999"', '"tcp://[::1]:99999"', '"rtsp:/host"', '"rtsp://u:p@@h/?pwd=x\\n"', "[1, 'a', {x=1}]",
    "[[]]", "{}", "[]", "true", "0", "-1", "1e308", "2e-308",
]
STRING_TOML = [raw for raw in RAW_TOML if raw.startswith('"')]  # a string key gets these half the time
TOML_SCALARS = (
    st.booleans() | st.integers() | st.sampled_from([2**63, -(2**63) - 1, 10**30, int("9" * 4000)])
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
    | st.sampled_from(["", "\x00", "~", "x" * 10_000, "../../../etc/passwd", "tcp://*:0", "ipc://", "rtsp://"])
)


def toml_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    return st.recursive(
        TOML_SCALARS,
        lambda inner: st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(SCHEMA_KEYS) | st.text(min_size=1, max_size=10), inner, max_size=5),
        max_leaves=max_leaves,
    )


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    """A copy of `doc` with the key at `path` set to `value`."""
    doc = copy.deepcopy(doc)
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


def _mutated_documents() -> st.SearchStrategy[str]:
    """The default config with one key (or section) set to a generated value or to raw hostile TOML."""
    written = st.builds(lambda path, value: tomli_w.dumps(_set(DEFAULT, path, value)),
                        st.sampled_from(PATHS), toml_values(6))
    spliced = st.sampled_from(PATHS).flatmap(lambda path: st.builds(
        lambda raw: tomli_w.dumps(_set(DEFAULT, path, PLACEHOLDER)).replace(f'"{PLACEHOLDER}"', raw, 1),
        st.sampled_from(STRING_TOML if isinstance(_get(DEFAULT, path), str) else RAW_TOML) | st.sampled_from(RAW_TOML)))
    return written | spliced


def _arbitrary_documents() -> st.SearchStrategy[str]:
    tables = st.dictionaries(st.sampled_from(SCHEMA_KEYS) | st.text(min_size=1, max_size=10), toml_values(), max_size=8)
    return st.builds(tomli_w.dumps, tables)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


def _outcome(path: Path) -> Settings | None:
    """Settings or None for a ConfigError of one line; any other exception fails the test."""
    try:
        settings = load_settings(path)
    except ConfigError as err:
        assert "\n" not in str(err) and str(err), f"not one line: {str(err)[:300]!r}"
        return None
    _check_usable(settings)
    return settings


ENDPOINT_TEXT = re.compile(r"[\x21-\x7e]*")  # printable ASCII, no whitespace: what ZeroMQ and a socket can bind


def _check_usable(settings: Settings) -> None:
    """What `check` passed, `run` can use: endpoints plain ASCII, addresses that split, finite timings."""
    for endpoint in (settings.bus.publish, settings.bus.pool, settings.metrics.listen, settings.view.listen):
        assert ENDPOINT_TEXT.fullmatch(endpoint), f"endpoint {endpoint!r} accepted"
    settings.metrics.address()
    settings.view.address()
    assert all(math.isfinite(c.max_fps) and math.isfinite(c.stall_s) for c in settings.cameras)


def _write(folder: Path, content: str | bytes) -> Path:
    path = folder / "textwatch.toml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(content)
    return path


def test_the_fuzz_starts_from_a_valid_config(folder: Path) -> None:
    """The mutations start from a config that loads (else they would prove nothing)."""
    assert _outcome(_write(folder, tomli_w.dumps(DEFAULT))) is not None
    assert len(PATHS) > 100


@FUZZ
@given(document=_mutated_documents())
@example(document=tomli_w.dumps(DEFAULT).replace('"../backup/textwatch-tiny.cfg"', "[" * 5000 + "]" * 5000))
def test_a_config_with_one_hostile_key_loads_or_is_a_config_error(folder: Path, document: str) -> None:
    _outcome(_write(folder, document))


@FUZZ
@given(document=_arbitrary_documents())
def test_an_arbitrary_toml_document_loads_or_is_a_config_error(folder: Path, document: str) -> None:
    _outcome(_write(folder, document))


@FUZZ
@given(content=st.binary(max_size=200) | st.text(max_size=200) | st.sampled_from(RAW_TOML).map(lambda raw: f"x = {raw}\n"))
def test_raw_text_and_bytes_load_or_are_a_config_error(folder: Path, content: str | bytes) -> None:
    _outcome(_write(folder, content))


# ---------------------------------------------------------------- regressions the fuzzing found


def _loaded(folder: Path, document: str) -> str:
    """The one-line ConfigError message `document` gives (the test fails if it loads or raises anything else)."""
    with pytest.raises(ConfigError) as err:
        load_settings(_write(folder, document))
    message = str(err.value)
    assert "\n" not in message
    return message


def _with(path: tuple, raw: str) -> str:
    return tomli_w.dumps(_set(DEFAULT, path, PLACEHOLDER)).replace(f'"{PLACEHOLDER}"', raw, 1)


def test_a_deeply_nested_or_overlong_value_is_a_config_error(folder: Path) -> None:
    """Regression: a 5,000-deep TOML array (RecursionError) exited 70 "internal error", and an
    integer of 5,000 digits raised a bare ValueError (Python's int-digits limit) out of load_settings."""
    assert "too deeply" in _loaded(folder, "x = " + "[" * 5000 + "]" * 5000)
    assert "too deeply" in _loaded(folder, "x = " + "{a=" * 3000 + "1" + "}" * 3000)
    assert "4300 digits" in _loaded(folder, "[image]\nmax_pixels = " + "9" * 5000)


def test_a_newline_in_a_key_or_value_keeps_the_error_on_one_line(folder: Path) -> None:
    """Regression: `"\\n" = []` gave "unknown key '<newline>'", and a camera url with a newline a
    "one-line" error over two lines."""
    assert "unknown key '\\n'" in _loaded(folder, '"\\n" = []\n')
    assert "\\n" in _loaded(folder, _with(("cameras", 0, "url"), '"ftp://a\\nb"'))


@pytest.mark.parametrize("raw", ['"~nosuchuser-textwatch/x"', '"a\\u0000b"'])
@pytest.mark.parametrize("path", [("detector", "cfg"), ("cameras", 0, "url"), ("history", "database")])
def test_an_unusable_path_is_a_config_error(folder: Path, path: tuple, raw: str) -> None:
    """Regression: "~nosuchuser/x" raised RuntimeError (no such home folder) and a NUL byte ValueError
    (embedded null byte) while paths were resolved, after validation, out of load_settings."""
    assert "cannot be used" in _loaded(folder, _with(path, raw))


@pytest.mark.parametrize(("path", "raw"), [
    (("bus", "publish"), '"tcp://127.0.0.1:\\u0663\\u0663\\u0663\\u0663"'),
    (("bus", "publish"), '"tcp://127.0.0.1:5999\\n"'),
    (("metrics", "listen"), '"127.0.0.1:9108\\n"'),
    (("view", "listen"), '"127.0.0.1:8088\\n"'),
])
def test_an_endpoint_zeromq_cannot_bind_is_a_config_error(folder: Path, path: tuple, raw: str) -> None:
    """Regression: `\\d` took Arabic-Indic digits as the port, `$` a trailing newline, and a tcp host any
    character (a space, "é"): check said ok to endpoints that run could not bind."""
    assert ".".join(map(str, path)) in _loaded(folder, _with(path, raw))


@pytest.mark.parametrize("endpoint", ["tcp://a b:5999", "tcp://\u00e9:5999", "tcp://a\tb:1"])
def test_a_tcp_host_is_printable_ascii(endpoint: str) -> None:
    """Regression: tcp_endpoint took any host character but ":/[]" (a space, a tab, "é"), which ZeroMQ cannot
    bind; a config set with CURVE keys (so beyond loopback is allowed) passed check with them."""
    with pytest.raises(ValueError, match="is not tcp://HOST:PORT"):
        tcp_endpoint(endpoint, "bus.pool")


@pytest.mark.parametrize("pattern", ['"a{99999999999}"', '"' + "(" * 3000 + ")" * 3000 + '"'])
def test_an_unusable_format_is_a_config_error(folder: Path, pattern: str) -> None:
    """Regression: filters.format "a{99999999999}" raised OverflowError and 3,000 nested groups
    RecursionError through pydantic (which turns only ValueError into a validation error)."""
    assert "cameras.0.filters.format" in _loaded(folder, _with(("cameras", 0, "filters", "format"), pattern))
