"""Log lines under systemd (JSON) carry what an operator needs."""

from __future__ import annotations

import json
import subprocess
import sys


def test_a_logged_exception_carries_its_traceback_in_json() -> None:
    """Regression: the JSON renderer printed `"exc_info": true` and no traceback, so a crashed
    child (`child_crashed`) or an internal error left nothing to debug from under systemd."""
    code = (
        "from textwatch.log import setup_logging, get_logger\n"
        "setup_logging('info', process='ocr-0', json=True)\n"
        "try:\n    {}['missing']\n"
        "except KeyError:\n    get_logger().exception('child_crashed')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = json.loads(out.stderr.strip().splitlines()[-1])
    assert line["event"] == "child_crashed" and line["process"] == "ocr-0"
    assert "Traceback" in line["exception"] and "KeyError: 'missing'" in line["exception"]
