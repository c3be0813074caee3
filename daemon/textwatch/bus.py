"""Where the sockets are, and how they are made: endpoint names, HWMs, linger.

Which process owns which socket (docs/protocol.md has the picture):

    endpoint        socket (side)                         owner
    crops           PUSH bind   -> PULL connect           detect -> recognize_worker
    results         PUB connect -> XSUB bind              recognize_worker, detect -> publish
    publish         XPUB bind   -> SUB connect            publish -> subscribers
    pool_crops      PUSH bind (same socket as crops)      detect -> remote workers (tcp)
    pool_results    XSUB bind (same socket as results)    remote workers -> publish (tcp)

The internal endpoints are ipc sockets in a runtime folder only our user can
enter (mode 0700): a local process of another user can neither feed crops nor
forge results. The pool endpoints are plain tcp without authentication in
schema v1: bind them on a trusted network only.

High-water marks are chosen here, once, and each constant says why. Every
socket gets ZeroMQ heartbeats (a remote worker that vanishes without closing
its TCP connection loses its pipe within HEARTBEAT_TIMEOUT_MS, so PUSH stops
routing crops to it) and capped exponential reconnect backoff.
"""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq

from textwatch.config import Settings
from textwatch.errors import ConfigError

# A worker's PULL queue. Small on purpose: PUSH deals crops round-robin to every
# pipe that has room, so a worker holding 200 crops would sit on work that idle
# workers could take, and those crops would be seconds stale when read. The OS
# socket buffer can hold a few more crops beyond these 4 (ipc/tcp buffering);
# on shutdown the crops still queued in a worker are lost, which is why this is small.
WORKER_CROP_RCVHWM = 4

# A worker's (or any producer's) results PUB towards the publisher. The publisher
# drains its XSUB as fast as it can; results only queue here while it is stalled,
# and a PUB never blocks: past 1000 messages (seconds of results of a busy worker)
# new results are dropped instead of stalling OCR. While the publisher is down
# there is no pipe at all and results are dropped at once (PUB semantics).
RESULTS_SNDHWM = 1000

# Linger: how long close() may wait to hand queued messages to the kernel.
# Results and stats: long enough for the last result and final stats to leave.
# Crops and subscription traffic: 0, a queued crop is worth nothing after exit.
RESULTS_LINGER_MS = 1000
PUBLISH_LINGER_MS = 500
NO_LINGER_MS = 0

HEARTBEAT_IVL_MS = 2000
HEARTBEAT_TIMEOUT_MS = 6000
RECONNECT_IVL_MS = 100  # first reconnect delay; ZeroMQ doubles it up to the cap
RECONNECT_IVL_MAX_MS = 5000

# sockaddr_un.sun_path holds 108 bytes on Linux (104 on BSD): refuse longer paths
# with a clear message instead of a bind error deep in libzmq.
MAX_IPC_PATH = 100


@dataclass(frozen=True)
class Endpoints:
    """All bus addresses of one daemon, derived from Settings."""

    runtime_dir: Path
    crops: str  # ipc: PUSH binds in the detect process, workers' PULL connect
    results: str  # ipc: the publisher's XSUB binds, every producer's PUB connects
    publish: str  # the publisher's XPUB binds, subscribers connect (settings.bus.publish)
    pool_crops: str | None = None  # tcp://HOST:PORT, bound by the crops PUSH too (remote workers)
    pool_results: str | None = None  # tcp://HOST:PORT+1, bound by the results XSUB too

    @classmethod
    def from_settings(cls, settings: Settings, create: bool = True) -> Endpoints:
        """Compute the endpoints; with `create`, make the runtime folder (0700) if needed."""
        folder = runtime_dir(settings)
        if create:
            ensure_private_dir(folder)
        pool_crops, pool_results = pool_endpoints(settings.bus.pool)
        return cls(
            runtime_dir=folder,
            crops=ipc_endpoint(folder / "crops.ipc"),
            results=ipc_endpoint(folder / "results.ipc"),
            publish=settings.bus.publish,
            pool_crops=pool_crops,
            pool_results=pool_results,
        )

    @property
    def crop_binds(self) -> list[str]:
        return [self.crops] + ([self.pool_crops] if self.pool_crops else [])

    @property
    def result_binds(self) -> list[str]:
        return [self.results] + ([self.pool_results] if self.pool_results else [])


def runtime_dir(settings: Settings) -> Path:
    """bus.runtime_dir, else $RUNTIME_DIRECTORY (systemd RuntimeDirectory=), else /tmp/textwatch-UID."""
    if settings.bus.runtime_dir is not None:
        return Path(settings.bus.runtime_dir)
    from_systemd = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if from_systemd:
        return Path(from_systemd)
    return Path("/tmp") / f"textwatch-{os.getuid()}"


def ensure_private_dir(folder: Path) -> None:
    """Create `folder` with mode 0700, or check that an existing one is ours and private.

    /tmp is shared: a folder (or symlink) planted there by another user must not
    become the home of our sockets, so it is refused rather than used.
    """
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except OSError as err:
        raise ConfigError(f"runtime folder {folder}: {err.strerror}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"runtime folder {folder} is not a directory (a symlink?); refusing it")
    if info.st_uid != os.getuid():
        raise ConfigError(f"runtime folder {folder} belongs to uid {info.st_uid}, not us; refusing it")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(folder, 0o700)


def ipc_endpoint(path: Path) -> str:
    text = str(path)
    if len(text.encode()) > MAX_IPC_PATH:
        raise ConfigError(f"ipc socket path {text} is longer than {MAX_IPC_PATH} bytes; set bus.runtime_dir shorter")
    return f"ipc://{text}"


def pool_endpoints(pool: str) -> tuple[str | None, str | None]:
    """tcp://HOST:PORT -> (tcp://HOST:PORT, tcp://HOST:PORT+1); "" -> (None, None)."""
    if not pool:
        return None, None
    host, port = split_tcp(pool, "bus.pool")
    if port > 65534:
        raise ConfigError(f"bus.pool {pool!r}: PORT+1 (results) must be a valid port too")
    return f"tcp://{host}:{port}", f"tcp://{host}:{port + 1}"


def split_tcp(endpoint: str, what: str) -> tuple[str, int]:
    """('HOST', PORT) of tcp://HOST:PORT; HOST may be *, a name, an address or [v6]."""
    if not endpoint.startswith("tcp://") or ":" not in endpoint[6:]:
        raise ConfigError(f"{what} {endpoint!r} is not tcp://HOST:PORT")
    host, _, port_text = endpoint[6:].rpartition(":")
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"{what} {endpoint!r} is not tcp://HOST:PORT with PORT in 1..65535")
    return host, int(port_text)


def remote_endpoints(connect: str) -> tuple[str, str]:
    """A remote worker's (crops, results) from the daemon's pool address tcp://HOST:PORT."""
    crops, results = pool_endpoints(connect)
    if crops is None or results is None:
        raise ConfigError("--connect needs the daemon's bus.pool address, tcp://HOST:PORT")
    return crops, results


# ---------------------------------------------------------------- sockets


def make_socket(
    ctx: zmq.Context,
    kind: int,
    *,
    linger_ms: int,
    sndhwm: int | None = None,
    rcvhwm: int | None = None,
) -> zmq.Socket:
    """A socket with linger, HWMs, heartbeats and reconnect backoff set before any bind/connect.

    HWMs must be set before bind/connect: ZeroMQ applies them to pipes as they are created.
    """
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, linger_ms)
    if sndhwm is not None:
        sock.setsockopt(zmq.SNDHWM, sndhwm)
    if rcvhwm is not None:
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    return sock


def local_workers(settings: Settings) -> int:
    """pipeline.workers, with 0 meaning CPU cores minus one, at least one."""
    return settings.pipeline.workers or max(1, (os.cpu_count() or 2) - 1)


def crop_pusher(ctx: zmq.Context, endpoints: Endpoints, settings: Settings) -> zmq.Socket:
    """The detect process's crops PUSH, bound on crops (and pool_crops).

    SNDHWM is per connected worker (a PUSH has one queue per pipe), so
    pipeline.crop_hwm is spread over the local workers: crop_hwm crops in all are
    queued before new ones are refused. Send with zmq.NOBLOCK and count zmq.Again
    as a dropped crop: capture must never wait for OCR. Remote workers get a queue
    of the same size each. LINGER 0: queued crops are worthless after exit.
    """
    per_worker = max(1, settings.pipeline.crop_hwm // local_workers(settings))
    sock = make_socket(ctx, zmq.PUSH, linger_ms=NO_LINGER_MS, sndhwm=per_worker)
    for endpoint in endpoints.crop_binds:
        sock.bind(endpoint)
    return sock


def crop_puller(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    """A worker's crops PULL (connect), RCVHWM = WORKER_CROP_RCVHWM."""
    sock = make_socket(ctx, zmq.PULL, linger_ms=NO_LINGER_MS, rcvhwm=WORKER_CROP_RCVHWM)
    sock.connect(endpoint)
    return sock


def result_publisher(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    """A producer's results socket (connect to the publisher's XSUB), SNDHWM = RESULTS_SNDHWM.

    It is an XPUB, not a PUB: it behaves exactly like a PUB for sending, and it
    also receives the publisher's subscription (b"\\x01text."), which tells the
    producer that its results have somewhere to go (`wait_for_subscriber`).
    Whoever owns it must read those subscription messages now and then
    (`drain_subscriptions`).
    """
    sock = make_socket(ctx, zmq.XPUB, linger_ms=RESULTS_LINGER_MS, sndhwm=RESULTS_SNDHWM)
    sock.connect(endpoint)
    return sock


def wait_for_subscriber(sock: zmq.Socket, timeout_s: float, stop: threading.Event | None = None) -> bool:
    """True once `sock` (an XPUB) has received a subscription; False after timeout_s or on stop."""
    deadline = time.monotonic() + timeout_s
    while not (stop is not None and stop.is_set()):
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            return False
        if sock.poll(min(left_ms, 100), zmq.POLLIN):
            frame = sock.recv()
            if frame[:1] == b"\x01":
                return True
    return False


def drain_subscriptions(sock: zmq.Socket) -> int:
    """Read (and discard) the subscription messages queued on an XPUB; how many."""
    count = 0
    while True:
        try:
            sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return count
        count += 1


def stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM and SIGINT set `stop` (handlers only set a flag); returns a function restoring the old handlers.

    Outside the main thread signal handlers cannot be installed; the caller's
    `stop` event is then the only way to stop, and this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    # An ignored SIGINT stays ignored: under the supervisor, Ctrl-C reaches the whole
    # process group and only the supervisor may decide (it stops children in stages).
    previous = {
        sig: signal.getsignal(sig)
        for sig in (signal.SIGTERM, signal.SIGINT)
        if signal.getsignal(sig) is not signal.SIG_IGN
    }

    def handle(signum: int, frame: object) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, handle)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def set_process_title(title: str) -> None:
    """Name the process in ps/top if setproctitle is installed (optional; no dependency)."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(title)
