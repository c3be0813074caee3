"""The config schema: strict, typed, documented by the default file.

How the CLI reports a bad config (exit 78, one line) is in process/test_config_cli.py.
"""

from __future__ import annotations

import pytest

from support.paths import ROOT
from textwatch.config import DEFAULT_CONFIG, Settings, load_settings, render_default_config
from textwatch.errors import ConfigError


def test_default_file_is_generated_from_the_schema() -> None:
    assert DEFAULT_CONFIG.read_text() == render_default_config(), "run `make config` after changing the schema"


def test_default_file_equals_builtin_defaults() -> None:
    from_file = load_settings(DEFAULT_CONFIG).model_dump(exclude={"source"})
    assert from_file == load_settings(None).model_dump(exclude={"source"})


def test_relative_paths_resolve_against_the_config_folder(write_config) -> None:
    path = write_config('[detector]\ncfg = "models/x.cfg"\n')
    assert load_settings(path).detector.cfg == path.parent / "models" / "x.cfg"
    assert load_settings(None).detector.cfg == ROOT / "backup" / "textwatch-tiny.cfg"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[detector]\nconfidense = 0.5\n', "unknown key 'detector.confidense'"),
        ('[camera]\nurl = "x"\n', "unknown key 'camera'"),
        ('[detector]\nconfidence = "high"\n', "'detector.confidence'"),
        ('[detector]\nconfidence = 1.5\n', "'detector.confidence'"),
        ('[ocr]\nengine = "easyocr"\n', "'ocr.engine'"),
        ('[ocr]\nlanguages = "eng; rm -rf"\n', "'ocr.languages'"),
        ("[detector\n", "not valid TOML"),
        # Regression (issue 22): tile_size 64 with overlap 0.89 passed and took detect to 8.5 GB.
        ('[detector]\ntile_size = 64\n', "'detector.tile_size'"),
        ('[detector]\ntile_overlap = 0.89\n', "'detector.tile_overlap'"),
    ],
)
def test_bad_config_is_one_clear_error(write_config, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(write_config(text))



def test_omitted_paths_keep_pointing_at_the_shipped_files(write_config) -> None:
    """Regression: defaults like "../backup/..." were resolved against the folder of any
    config file, so a config elsewhere that omitted [detector] or [[cameras]] lost them."""
    settings = load_settings(write_config('[ocr]\npsm = 6\n'))
    assert settings.detector.cfg == ROOT / "backup" / "textwatch-tiny.cfg"
    assert settings.cameras[0].url == str(ROOT / "daemon" / "textwatch" / "data" / "sample.mp4")


def test_a_config_without_cameras_is_refused() -> None:
    """Regression: `cameras = []` passed validation; the daemon started and exited 0 at once."""
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="cameras"):
        Settings.model_validate({"cameras": []})
