"""`textwatch subscribe`: the reference subscriber, and a tool to watch the bus.

Connects a SUB to the publisher's XPUB (bus.publish by default) and prints one
line per message:

    text.*   camera seq [x1,y1,x2,y2] text (ocr conf)
    frame.*  frame camera seq n/N regions [complete|missing i,j]: text | text
    event.*  event camera source_down source (reason)
    stats    stats process key=value ...

or, with --json, one JSON object per line: the message payload with its topic
added as "topic". Exits 0 after --count messages, on Ctrl-C or SIGTERM; with --timeout,
exits 1 when nothing arrived for that many seconds. A malformed message is
reported on stderr and skipped.

Gaps: the publisher stamps every message with a per-topic `topic_seq`. A jump
means messages of that topic were lost for this subscriber (its queue or the
daemon's bus.publish_hwm ran full): one line on stderr says how many, and the
total is printed at exit. A step back means the publisher restarted.

A daemon whose publish endpoint speaks CURVE (bus.curve_secret_key set) needs
this client's key pair, its public key in the daemon's allow-list, and the
daemon's public key: --curve-secret-key and --curve-server-key, or
bus.curve_client_secret_key and bus.curve_server_key of -c CONFIG. Without
them (or with a key the daemon does not know) nothing arrives: ZeroMQ keeps
retrying the handshake silently. Same-user tools on the daemon's host can use
the plain ipc endpoint instead: --endpoint ipc://RUNTIME/publish.ipc.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from textwatch import bus, wire
from textwatch.config import Settings, load_settings
from textwatch.errors import ConfigError, ExitCode

POLL_MS = 200  # Ctrl-C and --timeout are looked at this often
# Our own queue; the publisher already drops for us past bus.publish_hwm, so a
# larger queue here only delays the moment a slow terminal starts missing lines.
RCVHWM = 1000


def add_subscribe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help="publisher address (default: bus.publish of the config)")
    parser.add_argument("-c", "--config", help="config file to take bus.publish from (default: built-in defaults)")
    parser.add_argument(
        "--topic", action="append", default=[], metavar="PREFIX",
        help="topic prefix to receive, e.g. text. or frame.cam1 (repeatable; default: everything)",
    )
    parser.add_argument("--json", action="store_true", help="print each message as one JSON line (payload + topic)")
    parser.add_argument("--count", type=int, metavar="N", help="exit 0 after N messages")
    parser.add_argument("--timeout", type=float, metavar="S", help="exit 1 when nothing arrives for S seconds")
    parser.add_argument(
        "--curve-secret-key", type=Path, metavar="FILE",
        help="this client's CURVE secret key (.key_secret) for a daemon whose publish speaks CURVE "
        "(default: bus.curve_client_secret_key of the config)",
    )
    parser.add_argument(
        "--curve-server-key", type=Path, metavar="FILE",
        help="the daemon's CURVE public key (.key) (default: bus.curve_server_key of the config)",
    )


def client_curve(args: argparse.Namespace, settings: Settings) -> bus.ClientCurve | None:
    """The CURVE keys from the flags (both, or neither), else from the config's [bus]; None = plain."""
    if (args.curve_secret_key is None) != (args.curve_server_key is None):
        raise ConfigError("--curve-secret-key and --curve-server-key go together")
    if args.curve_secret_key is not None:
        return bus.ClientCurve.from_files(args.curve_secret_key, args.curve_server_key, "--curve-secret-key")
    return bus.ClientCurve.from_settings(settings)


def stop_on_sigterm() -> None:
    """SIGTERM stops like Ctrl-C: the gap total is printed and the exit is 0. A tool started from
    a script or a supervisor is stopped by TERM, and one started in the background of a
    non-interactive shell (or by pytest-xdist) inherits SIGINT ignored (regression: it never exited)."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run_subscribe(args: argparse.Namespace) -> int:
    stop_on_sigterm()
    settings = load_settings(args.config)
    endpoint = args.endpoint or settings.bus.publish
    curve = client_curve(args, settings)
    sock = bus.subscriber(zmq.Context.instance(), endpoint, args.topic or [""], rcvhwm=RCVHWM, curve=curve)
    try:
        return _receive(sock, args)
    except KeyboardInterrupt:
        return int(ExitCode.OK)
    finally:
        sock.close()


class GapCounter:
    """Per-topic topic_seq bookkeeping: how many messages this subscriber missed, topic by topic."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.missed = 0

    def see(self, topic: str, payload: dict[str, Any]) -> str | None:
        """A line to report for this message (a gap, a publisher restart), or None."""
        seq = payload.get(wire.TOPIC_SEQ)
        if not isinstance(seq, int) or isinstance(seq, bool):
            return None  # a daemon from before topic_seq
        last, self.last[topic] = self.last.get(topic), seq
        if last is None or seq == last + 1:
            return None
        if seq <= last:
            return f"{topic}: topic_seq went back from {last} to {seq} (the publisher restarted)"
        self.missed += seq - last - 1
        return f"{topic}: {seq - last - 1} messages missed (topic_seq {last + 1}..{seq - 1})"


def _receive(sock: zmq.Socket, args: argparse.Namespace) -> int:
    gaps = GapCounter()
    try:
        return _receive_counting(sock, args, gaps)
    finally:
        if gaps.missed:
            print(f"textwatch subscribe: {gaps.missed} messages missed in all", file=sys.stderr)


def _receive_counting(sock: zmq.Socket, args: argparse.Namespace, gaps: GapCounter) -> int:
    received = 0
    last = time.monotonic()
    while args.count is None or received < args.count:
        if not sock.poll(POLL_MS, zmq.POLLIN):
            if args.timeout is not None and time.monotonic() - last >= args.timeout:
                print(f"textwatch subscribe: nothing received for {args.timeout:g} s", file=sys.stderr)
                return int(ExitCode.PARTIAL)
            continue
        frames = sock.recv_multipart()
        last = time.monotonic()
        try:
            name, payload = wire.decode_published(frames)
        except wire.WireError as err:
            print(f"textwatch subscribe: malformed message skipped: {err}", file=sys.stderr)
            continue
        gap = gaps.see(name, payload)
        if gap is not None:
            print(f"textwatch subscribe: {gap}", file=sys.stderr)
        print(json.dumps({"topic": name, **payload}, ensure_ascii=False) if args.json else format_line(name, payload), flush=True)
        received += 1
    return int(ExitCode.OK)


def format_line(name: str, p: dict[str, Any]) -> str:
    """One human-readable line per message; tolerant of missing fields (v1 may grow, producers may err)."""
    kind = name.split(".", 1)[0]
    if kind == wire.TOPIC_TEXT:
        return f"{p.get('camera')} {p.get('seq')} {_box(p.get('box'))} {_reading(p)}"
    if kind == wire.TOPIC_FRAME:
        regions = p.get("regions") or []
        total = len(regions) + len(p.get("missing") or [])
        state = "complete" if p.get("complete") else "missing " + ",".join(map(str, p.get("missing") or []))
        texts = " | ".join(r.get("text", "") for r in regions if isinstance(r, dict) and r.get("status") == "text")
        return f"frame {p.get('camera')} {p.get('seq')} {len(regions)}/{total} regions {state}: {texts}"
    if kind == wire.TOPIC_EVENT:
        return f"event {p.get('camera')} {p.get('event')} {p.get('source')} ({p.get('reason')})"
    if kind == wire.TOPIC_STATS:
        return _stats_line(p)
    return f"{name} {json.dumps(p, ensure_ascii=False)}"


def _stats_line(p: dict[str, Any]) -> str:
    """`stats PROCESS key=value ...` of a valid stats message; a malformed one is shown raw, marked."""
    try:
        stats = wire.stats_from_dict(p)
    except wire.WireError as err:
        return f"stats (malformed: {err}) {json.dumps(p, ensure_ascii=False)}"
    values = " ".join(f"{k}={v}" for k, v in wire.stats_payload(stats).items() if k not in ("v", "process", "role", "ts"))
    return f"stats {stats.process} {values}"


def _box(box: object) -> str:
    return "[" + ",".join(map(str, box)) + "]" if isinstance(box, list) else "[?]"


def _reading(p: dict[str, Any]) -> str:
    status = p.get("status")
    if status == "text":
        return f"{p.get('text')} (ocr {p.get('ocr_confidence')})"
    if status == "failed":
        return f"<failed: {p.get('error')}>"
    return f"<{status}>"
