"""A real headless Chromium (Debian's `chromium` and `chromium-driver`), driven by selenium.

Never downloads a browser or a driver: both paths are given, and SE_OFFLINE keeps
Selenium Manager from looking anything up. As root Chromium needs --no-sandbox; the
other flags keep it from reaching out (updates, sync, QUIC) and give it a fresh profile.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,860",
)


def require_chromium() -> None:
    """Skip (with the reason) where the Debian packages are missing: `make test` installs them."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.skip(f"headless Chromium not installed ({', '.join(missing)}): apt-get install chromium chromium-driver")
    pytest.importorskip("selenium", reason="selenium is in the test extra: pip install -e '.[test]'")


@contextmanager
def headless_chromium(profile: Path) -> Iterator[object]:
    """A selenium WebDriver on a fresh profile folder; quit (and the profile removed) at exit."""
    require_chromium()
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
