"""The history store and `textwatch view` against one running daemon (shared by every test here).

The bundled sample video (daemon/textwatch/data/sample.mp4, looped) through the
whole daemon with the shipped detector and [history] on; `textwatch view` beside it on a free loopback port. The tests read the
database through `textwatch history` and the REST API, kill the history
process, and open the page in a real headless Chromium.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import zmq

from support.browser import headless_chromium, require_chromium
from support.cli import run_cli, textwatch_exe
from support.daemon import Daemon, daemon_config
from support.ports import free_port
from support.wait import wait_until
import textwatch
from textwatch import bus, wire

pytestmark = pytest.mark.slow

SAMPLE = Path(textwatch.__file__).parent / "data" / "sample.mp4"
WORD = "4471"  # the sample's "Invoice 4471 due 2026-12-01", then "... paid 2026-11-28"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script> RESUMED'


class Running:
    def __init__(self, daemon: Daemon, url: str, database: Path, config: Path) -> None:
        self.daemon, self.url, self.database, self.config = daemon, url, database, config
        self.found = ""  # the first text of the sample with WORD the history wrote

    def with_word(self) -> str:
        self.found = next((text for text in self.texts() if WORD in text), "")
        return self.found

    def get(self, path: str) -> tuple[int, Any]:
        """(status, JSON body) of a GET on the view."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def texts(self) -> list[str]:
        """The texts in the database, read the way any reader does (WAL: never blocks the writer)."""
        db = sqlite3.connect(f"{self.database.as_uri()}?mode=ro", uri=True)
        try:
            return [row[0] for row in db.execute("SELECT text FROM tracks ORDER BY id")]
        except sqlite3.OperationalError as err:
            # Regression (fresh-clone run): the file exists a moment before the writer's schema does.
            if "no such table" in str(err):
                return []
            raise
        finally:
            db.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory):
    from support.models import needs_shipped_model

    needs_shipped_model()
    folder = tmp_path_factory.mktemp("view")
    database = folder / "history.sqlite3"
    config = daemon_config(folder, str(SAMPLE), history=database, loop=True, realtime=True, max_fps=2.0,
                           shipped_detector=True, workers=1)
    port = free_port()
    commands = {
        "daemon": [str(textwatch_exe()), "run", "-c", str(config)],
        "view": [str(textwatch_exe()), "view", "-c", str(config), "--listen", f"127.0.0.1:{port}"],
    }
    with Daemon(config, commands) as daemon:
        run = Running(daemon, f"http://127.0.0.1:{port}", database, config)
        wait_until(lambda: database.is_file() and run.with_word(), timeout=120,
                   message=lambda: daemon.log_text()[-2000:])
        yield run
        assert daemon.terminate(timeout=30, name="view") == 0
        assert daemon.terminate(timeout=30) == 0


def inject_track(run: Running, track: int, text: str) -> None:
    """Put a track event on the daemon's results bus, as a producer does, until the database has it.

    The publisher forwards it like any other message, so it reaches the history process and
    the view by the real path. Sent again until written: the first may go before our pipe is up.
    """
    endpoints = run.daemon.endpoints
    sock = bus.result_publisher(zmq.Context.instance(), endpoints.results)
    now = time.time()
    event = wire.TrackEvent(camera="cam1", track=track, event="changed", ts=now, box=(0, 0, 300, 64), text=text,
                            confidence=99.0, reads=1, first_seq=0, first_ts=now, last_seq=0, last_ts=now)
    try:
        def written() -> bool:
            sock.send_multipart(wire.encode_published(wire.TOPIC_TRACK, event, "cam1"))
            return text in run.texts()

        wait_until(written, timeout=30, interval=0.3, message=f"{text!r} never reached the history")
    finally:
        sock.close(linger=0)


def test_history_is_written_and_searchable_from_the_terminal(running: Running) -> None:
    out = run_cli("history", "-c", str(running.config), WORD, "--json")
    assert out.returncode == 0, out.stderr
    hits = [json.loads(line) for line in out.stdout.splitlines()]
    assert hits and all(WORD in hit["text"] for hit in hits)  # a track's text may change (due -> paid)
    assert all(hit["camera"] == "cam1" for hit in hits) and any(hit["crop"] for hit in hits)
    fuzzy = run_cli("history", "-c", str(running.config), WORD.replace("7", "T"), "--fuzzy", "--json")  # one off
    assert WORD in fuzzy.stdout, fuzzy.stderr
    csv = run_cli("history", "-c", str(running.config), WORD, "--csv", "--camera", "cam1")
    assert csv.stdout.splitlines()[0].startswith("id,camera,track,text") and WORD in csv.stdout
    bad = run_cli("history", "-c", str(running.config), "--since", "yesterday")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "since" in bad.stderr


def test_rest_answers_queries_and_bad_input_gets_clear_4xx(running: Running) -> None:
    status, body = running.get(f"/api/history?q={WORD}&camera=cam1")
    assert status == 200 and body["hits"] and all(WORD in hit["text"] for hit in body["hits"])
    crop = urllib.request.urlopen(running.url + next(hit["crop"] for hit in body["hits"] if hit["crop"]), timeout=10)
    assert crop.headers["Content-Type"] == "image/jpeg" and crop.read(2) == b"\xff\xd8"
    for path, code, words in [
        ("/api/history?since=0", 400, "longer than"),  # a range of decades
        ("/api/history?since=abc", 400, "since"),
        ("/api/history?limit=100000", 400, "limit"),
        ("/api/history?camera=nosuch", 404, "unknown camera"),
        ("/api/history?colour=red", 400, "unknown parameter"),
        ("/api/history/abc/crop.jpg", 400, "not a number"),
        ("/api/cameras/nosuch/frame.jpg", 404, "unknown camera"),
    ]:
        status, body = running.get(path)
        assert (status, words in body["error"]) == (code, True), (path, status, body)


def test_a_killed_history_process_loses_nothing_committed_and_resumes(running: Running) -> None:
    before = running.texts()
    pid = running.daemon.child_pids("history")[-1]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: len(running.daemon.child_pids("history")) >= 2, timeout=30, message="history not restarted")
    assert running.texts()[: len(before)] == before
    inject_track(running, 9001, XSS)  # written by the restarted process; the browser test shows it


def test_the_page_shows_live_frames_and_texts_and_finds_them_in_history(running: Running, tmp_path: Path) -> None:
    require_chromium()
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if XSS not in running.texts():
        inject_track(running, 9001, XSS)
    with headless_chromium(tmp_path / "profile") as driver:
        # The page redraws the feed with each frame and the hits with each answer: an element read
        # while it is replaced is stale, and the next poll reads the new one (regression: under load
        # a hit replaced between find_elements and .text failed the test).
        wait = WebDriverWait(driver, 30, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
        driver.get(running.url + "/")
        image = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, 'img[data-camera="cam1"][data-seq]'))  # made once
        first = int(image.get_attribute("data-seq"))
        wait.until(lambda d: int(image.get_attribute("data-seq")) > first)  # the live frame updates
        assert driver.execute_script("return arguments[0].naturalWidth", image) > 0
        # boxes drawn on the frame, and their texts (read in one go: the page redraws them with each frame)
        wait.until(lambda d: d.execute_script("return document.querySelectorAll('#camera-cam1 svg rect').length"))
        wait.until(lambda d: d.execute_script("return document.querySelector('#camera-cam1 svg').textContent.trim()"))
        inject_track(running, 9002, XSS.replace("RESUMED", "LIVE"))
        feed = "return [...document.querySelectorAll('#feed .text')].map(e => e.textContent)"
        wait.until(lambda d: XSS.replace("RESUMED", "LIVE") in d.execute_script(feed))
        if os.environ.get("TEXTWATCH_SCREENSHOT"):
            driver.save_screenshot(os.environ["TEXTWATCH_SCREENSHOT"])

        driver.find_element(By.ID, "tab-history").click()
        driver.find_element(By.ID, "q").send_keys(WORD)
        driver.find_element(By.ID, "go").click()
        hit = wait.until(lambda d: next((h for h in d.find_elements(By.CSS_SELECTOR, "#hits .hit")
                                         if WORD in h.find_element(By.CSS_SELECTOR, ".text").text
                                         and h.find_elements(By.CSS_SELECTOR, "img.crop")), None))
        crop = hit.find_element(By.CSS_SELECTOR, "img.crop")
        wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", crop))

        query = driver.find_element(By.ID, "q")
        query.clear()
        query.send_keys("RESUMED")
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "#hits .text")] == [XSS])
        # the OCR'd markup stayed text: no element was made from it and nothing of it ran
        assert driver.execute_script("return window.__xss") is None
        assert not driver.find_elements(By.CSS_SELECTOR, '#hits img[src="x"], #feed img')
