"""`textwatch view` on its own (no daemon yet): the token, and what it says before any history exists."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from support.cli import textwatch_exe
from support.ports import free_port
from support.wait import wait_until

TOKEN = "0123456789abcdef-secret"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()
    except OSError:
        return 0, {}, b""


def test_a_token_guards_every_request_and_a_missing_history_is_503(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "textwatch.toml"
    config.write_text(f'[bus]\npublish = "tcp://127.0.0.1:{free_port()}"\nruntime_dir = "{tmp_path / "run"}"\n'
                      f'[history]\ndatabase = "{tmp_path / "none.sqlite3"}"\n[view]\ntoken = "{TOKEN}"\n')
    view = subprocess.Popen([str(textwatch_exe()), "view", "-c", str(config), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: get(url + "/")[0] == 401, timeout=30, message="view never answered")
        assert get(url + "/api/history?token=wrong")[0] == 401
        status, headers, body = get(url + f"/?token={TOKEN}")
        assert status == 200 and b"textwatch" in body and "default-src 'self'" in headers["Content-Security-Policy"]
        assert "HttpOnly" in headers["Set-Cookie"]
        status, _, body = get(url + "/api/history", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 503 and "does not exist yet" in json.loads(body)["error"]
        status, _, body = get(url + "/api/cameras/sample/frame.jpg", {"Cookie": f"textwatch_token={TOKEN}"})
        assert status == 503 and "no frame" in json.loads(body)["error"]
    finally:
        view.terminate()
        assert view.wait(timeout=15) == 0, view.stderr.read().decode() if view.stderr else ""
