"""Where the sockets are, and how they are made: endpoint names, HWMs, linger.

Every ZeroMQ socket of textwatch is made by a factory here; no other module
calls `Context.socket`. Which process owns which socket (docs/protocol.md has
the picture), and the factory that makes it:

    endpoint        socket (side)                         owner                            factory
    crops           PUSH bind   -> PULL connect           processes/detect -> processes/ocr  crop_pusher, crop_puller
    results         XPUB connect -> XSUB bind             processes/ocr, detect -> publisher result_publisher, publisher_proxy
    publish         XPUB bind   -> SUB connect            processes/publisher -> subscribers publisher_proxy, subscriber
    publish_local   XPUB bind (same socket as publish)    publisher -> supervisor, tools     publisher_proxy, subscriber
    pool_crops      PUSH bind (same socket as crops)      detect -> remote workers (tcp)     crop_pusher
    pool_results    XSUB bind (its own socket)            remote workers -> publisher (tcp)  publisher_proxy
    publish_local   SUB connect (or a remote publish)     publisher -> processes/mqtt        bridge_subscriber
    results         XPUB connect (its stats)              processes/mqtt -> publisher        result_publisher

`subscriber` serves the supervisor's stats link (processes/systemd.py),
`textwatch subscribe` and `textwatch bench`.

The internal endpoints are ipc sockets in a runtime folder only our user can
enter (mode 0700), and each socket file is made 0600 after its bind: a local
process of another user can neither feed crops nor forge results.

The tcp endpoints (publish, pool) use ZeroMQ CURVE when bus.curve_secret_key is
set: the binding socket is a CURVE server, and the ZAP authenticator thread of
the binding process (publisher, detect) admits only clients whose public key
is in bus.curve_allowed_keys. A tcp bind beyond loopback without keys is a
config error. Security options apply per bind (libzmq copies a socket's options
into each listener when it binds), so `bind` binds the ipc endpoints first,
plain, then switches the socket to CURVE and binds the tcp ones.

High-water marks are chosen here, once, and each constant says why. Every
socket gets ZeroMQ heartbeats (a remote worker that vanishes without closing
its TCP connection loses its pipe within HEARTBEAT_TIMEOUT_MS, so PUSH stops
routing crops to it) and capped exponential reconnect backoff.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from textwatch import wire
from textwatch.config import Settings, binds_beyond_loopback
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

# Largest message each receiving socket accepts (ZMQ_MAXMSGSIZE): libzmq drops the connection of
# a peer that sends more, before anything is allocated for it. Each bound is the largest message
# the protocol allows there, with room: a crop of wire.MAX_CROP_PIXELS BGR pixels; a text result
# or stats message; a subscription (a topic prefix); a frame.<camera> of wire.MAX_REGIONS regions.
MAX_CROP_BYTES = wire.MAX_CROP_PIXELS * 3 + 64 * 1024
MAX_RESULT_BYTES = 1024 * 1024
# What a subscriber sends: subscriptions (a topic is at most wire.MAX_TOPIC_BYTES) and, with CURVE,
# its handshake (HELLO 200 bytes, INITIATE about 300 with its metadata), which libzmq bounds the same way.
MAX_SUBSCRIPTION_BYTES = 512
MAX_PUBLISHED_BYTES = 16 * 1024 * 1024

HEARTBEAT_IVL_MS = 2000
HEARTBEAT_TIMEOUT_MS = 6000

# The public XPUB has no ZeroMQ heartbeat: a subscriber that pauses stops reading its TCP stream,
# so the pings it owes wait behind unread data, and a heartbeat timeout would drop it with the
# bus.publish_hwm messages queued for it (regression: a subscriber paused for 60 s kept 20 of 381).
# TCP keepalive finds peers that vanished instead (a dead host, a NAT that forgot the connection):
# the peer's kernel answers the probes even while its program sleeps. Dead after IDLE + INTVL * CNT.
SUBSCRIBER_KEEPALIVE_IDLE_S = 60
SUBSCRIBER_KEEPALIVE_INTVL_S = 10
SUBSCRIBER_KEEPALIVE_CNT = 6
RECONNECT_IVL_MS = 100  # first reconnect delay; ZeroMQ doubles it up to the cap
RECONNECT_IVL_MAX_MS = 5000
# The cap on an ipc link between our own processes (a producer's results to the publisher, a
# worker's crops from detect, history's and the MQTT bridge's subscriptions): a retry there
# costs a failed connect() on a local socket file, while every second of backoff after the peer
# binds is a second of messages sent into nothing. (A worker that started before the publisher
# bound could still be backing off when its old 5 s wait for the publisher ended.)
LOCAL_RECONNECT_IVL_MAX_MS = 200

# sockaddr_un.sun_path holds 108 bytes on Linux (104 on BSD): refuse longer paths
# with a clear message instead of a bind error deep in libzmq.
MAX_IPC_PATH = 100


@dataclass(frozen=True)
class Endpoints:
    """All bus addresses of one daemon, derived from Settings."""

    runtime_dir: Path | None  # None for a remote worker, which binds nothing
    crops: str  # ipc: PUSH binds in the detect process, workers' PULL connect
    results: str  # ipc: the publisher's XSUB binds, every producer's PUB connects
    publish: str  # the publisher's XPUB binds, subscribers connect (settings.bus.publish)
    publish_local: str  # ipc: the same XPUB binds it too; local tools (supervisor) connect, never CURVE
    pool_crops: str | None = None  # tcp://HOST:PORT, bound by the crops PUSH too (remote workers)
    pool_results: str | None = None  # tcp://HOST:PORT+1, bound by the publisher's pool XSUB

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
            publish_local=ipc_endpoint(folder / "publish.ipc"),
            pool_crops=pool_crops,
            pool_results=pool_results,
        )

    @classmethod
    def remote_worker(cls, connect: str) -> Endpoints:
        """A remote OCR worker's view of a daemon at bus.pool tcp://HOST:PORT: crops from PORT,
        results to PORT+1. It binds nothing, so the local-only fields stay empty."""
        crops, results = remote_endpoints(connect)
        return cls(runtime_dir=None, crops=crops, results=results, publish="", publish_local="")

    @property
    def crop_binds(self) -> list[str]:
        return [self.crops] + ([self.pool_crops] if self.pool_crops else [])

    @property
    def result_binds(self) -> list[str]:
        return [self.results] + ([self.pool_results] if self.pool_results else [])

    @property
    def publish_binds(self) -> list[str]:
        return [self.publish_local, self.publish]


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
    max_message: int | None = None,
    socket_class: type[zmq.Socket] = zmq.Socket,
    heartbeat: bool = True,
) -> zmq.Socket:
    """A socket with linger, HWMs, the largest inbound message, heartbeats and reconnect backoff,
    all set before any bind/connect (ZeroMQ applies them to pipes as they are created).

    `heartbeat=False` for the sockets that face subscribers (SUBSCRIBER_KEEPALIVE_IDLE_S says why):
    TCP keepalive instead of ZeroMQ pings."""
    sock = ctx.socket(kind, socket_class=socket_class)
    sock.setsockopt(zmq.LINGER, linger_ms)
    if max_message is not None:
        sock.setsockopt(zmq.MAXMSGSIZE, max_message)
    if sndhwm is not None:
        sock.setsockopt(zmq.SNDHWM, sndhwm)
    if rcvhwm is not None:
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
    if heartbeat:
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
    else:
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, SUBSCRIBER_KEEPALIVE_IDLE_S)
        sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, SUBSCRIBER_KEEPALIVE_INTVL_S)
        sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, SUBSCRIBER_KEEPALIVE_CNT)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    return sock


def local_workers(settings: Settings) -> int:
    """How many OCR workers the supervisor starts: pipeline.workers, with 0 meaning the CPUs
    this process may run on minus one (for capture+detect), at least one.

    The same number sizes the pool and splits pipeline.crop_hwm over the crops
    PUSH's pipes. Regression: the split used os.cpu_count() while the pool used
    the affinity mask, so under systemd CPUAffinity= or a container's cpuset
    the crops high-water mark was divided by the machine's cores, not the pool's.
    """
    return settings.pipeline.workers or max(1, len(os.sched_getaffinity(0)) - 1)


def crop_pusher(ctx: zmq.Context, endpoints: Endpoints, settings: Settings) -> zmq.Socket:
    """The detect process's crops PUSH, bound on crops (and pool_crops).

    SNDHWM is per connected worker (a PUSH has one queue per pipe), so
    pipeline.crop_hwm is spread over the local workers: crop_hwm crops in all are
    queued before new ones are refused. Send with zmq.NOBLOCK and count zmq.Again
    as a dropped crop: capture must never wait for OCR. Remote workers get a queue
    of the same size each. LINGER 0: queued crops are worthless after exit.

    With CURVE keys configured the pool bind is a CURVE server, and the socket
    is an `AuthenticatedSocket`: it starts the process's ZAP authenticator
    before binding and stops it in close(), so the caller's
    `push.close(); ctx.term()` stays as it is (term would wait for ever on a
    running authenticator's socket).
    """
    per_worker = max(1, settings.pipeline.crop_hwm // local_workers(settings))
    curve = ServerCurve.from_settings(settings)
    sock = make_socket(ctx, zmq.PUSH, linger_ms=NO_LINGER_MS, sndhwm=per_worker, socket_class=AuthenticatedSocket)
    try:
        # Watched from before the bind, so no worker's handshake can slip by unseen (wait_for_worker).
        sock.handshakes = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        if curve is not None and any(not is_local(e) for e in endpoints.crop_binds):
            sock.authenticator = start_authenticator(ctx, curve)
        bind(sock, endpoints.crop_binds, curve)
    except BaseException:
        sock.close()
        raise
    return sock


def wait_for_worker(push: AuthenticatedSocket, timeout_s: float, stop: threading.Event) -> bool:
    """True once a worker finished its handshake with the crops PUSH; False after timeout_s or on stop.

    A PUSH with no worker yet refuses every crop (zmq.Again: dropped and
    counted), and a worker reaches a freshly bound PUSH only after its own
    start and its reconnect backoff (up to RECONNECT_IVL_MAX_MS). Regression:
    detect read its first frames before any worker had joined, so the opening
    seconds of a file were lost at every start. Stops watching afterwards.
    """
    handshakes = push.handshakes
    if handshakes is None:
        return True
    deadline = time.monotonic() + timeout_s
    try:
        while not stop.is_set():
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return False
            if handshakes.poll(min(left_ms, 100), zmq.POLLIN):
                return True
        return False
    finally:
        push.stop_watching()


def crop_puller(ctx: zmq.Context, endpoint: str, curve: ClientCurve | None = None) -> zmq.Socket:
    """A worker's crops PULL (connect), RCVHWM = WORKER_CROP_RCVHWM; a CURVE client on tcp when `curve` is given."""
    sock = make_socket(ctx, zmq.PULL, linger_ms=NO_LINGER_MS, rcvhwm=WORKER_CROP_RCVHWM, max_message=MAX_CROP_BYTES)
    connect(sock, endpoint, curve)
    return sock


def result_publisher(ctx: zmq.Context, endpoint: str, curve: ClientCurve | None = None) -> zmq.Socket:
    """A producer's results socket (connect to the publisher's XSUB), SNDHWM = RESULTS_SNDHWM.

    It is an XPUB, not a PUB: it behaves exactly like a PUB for sending, and it
    also receives the publisher's subscription (b"\\x01text."), which tells the
    producer that its results have somewhere to go (`wait_for_subscriber`).
    Whoever owns it must read those subscription messages now and then
    (`drain_subscriptions`). A CURVE client on tcp when `curve` is given.
    """
    sock = make_socket(
        ctx, zmq.XPUB, linger_ms=RESULTS_LINGER_MS, sndhwm=RESULTS_SNDHWM, max_message=MAX_SUBSCRIPTION_BYTES
    )
    connect(sock, endpoint, curve)
    return sock


@dataclass
class PublisherProxy:
    """The publisher's sockets, bound, and the ZAP authenticator that guards their tcp binds.

    Two result sockets, because what may arrive is decided by the socket: `xsub` is our own
    processes (ipc in the 0700 runtime folder), `pool` the remote workers (tcp, anyone who reaches
    the port or holds an allowed key), whose messages the publisher admits far more narrowly.
    """

    xsub: zmq.Socket  # results in from our own processes: every local producer's XPUB connects here
    pool: zmq.Socket | None  # results in from remote workers (bus.pool PORT+1); None without a pool
    xpub: zmq.Socket  # subscribers out
    authenticator: ThreadAuthenticator | None

    def close(self) -> None:
        self.xsub.close()
        if self.pool is not None:
            self.pool.close()
        if self.xpub is not None:
            self.xpub.close()
        if self.authenticator is not None:  # after the sockets: its thread owns a socket of the context
            self.authenticator.stop()
            self.authenticator = None


def publisher_proxy(ctx: zmq.Context, endpoints: Endpoints, settings: Settings) -> PublisherProxy:
    """The publisher's XSUBs (results: local; pool_results: remote workers) and XPUB (publish_local, publish).

    XSUBs: no HWM games, the publisher drains them as fast as it can; LINGER 0,
    a subscription not yet sent upstream is worthless after exit. XPUB: SNDHWM =
    bus.publish_hwm per subscriber, so a slow subscriber loses messages (XPUB
    drops per pipe) and neither capture nor the other subscribers wait for it;
    no ZeroMQ heartbeat towards subscribers (SUBSCRIBER_KEEPALIVE_IDLE_S). CURVE
    on the tcp binds when keys are configured; the authenticator runs before
    anything binds.
    """
    curve = ServerCurve.from_settings(settings)
    remote = [e for e in endpoints.result_binds + endpoints.publish_binds if not is_local(e)]
    authenticator = start_authenticator(ctx, curve) if curve is not None and remote else None
    xsub = make_socket(ctx, zmq.XSUB, linger_ms=NO_LINGER_MS, max_message=MAX_RESULT_BYTES)
    pool = make_socket(ctx, zmq.XSUB, linger_ms=NO_LINGER_MS, max_message=MAX_RESULT_BYTES) if endpoints.pool_results else None
    proxy = PublisherProxy(xsub, pool, None, authenticator)  # type: ignore[arg-type] - the XPUB follows
    try:
        bind(xsub, [endpoints.results], curve)
        if pool is not None and endpoints.pool_results:
            bind(pool, [endpoints.pool_results], curve)
        proxy.xpub = publish_socket(ctx, endpoints, settings)
    except BaseException:
        proxy.close()
        raise
    return proxy


def publish_socket(ctx: zmq.Context, endpoints: Endpoints, settings: Settings, retry_s: float = 0.0) -> zmq.Socket:
    """The publisher's XPUB, bound on publish_local and publish (CURVE on tcp when keys are configured).

    Also made anew when the publisher drops every subscriber at once (too many subscriptions,
    processes/publisher.py): `retry_s` then allows libzmq a moment to release the old listeners.
    """
    curve = ServerCurve.from_settings(settings)
    deadline = time.monotonic() + retry_s
    while True:
        xpub = make_socket(
            ctx, zmq.XPUB, linger_ms=PUBLISH_LINGER_MS, sndhwm=settings.bus.publish_hwm,
            max_message=MAX_SUBSCRIPTION_BYTES, heartbeat=False,
        )
        try:
            bind(xpub, endpoints.publish_binds, curve)
            return xpub
        except zmq.ZMQError as err:
            xpub.close(linger=0)
            if err.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)  # the old socket's listeners close in libzmq's I/O thread: a moment, not a condition we can poll


def subscriber(
    ctx: zmq.Context,
    endpoint: str,
    topics: Iterable[str],
    *,
    rcvhwm: int,
    curve: ClientCurve | None = None,
    reconnect_ivl_max_ms: int = RECONNECT_IVL_MAX_MS,
) -> zmq.Socket:
    """A SUB on a publisher's XPUB (tools, the supervisor's stats link, tests): LINGER 0, subscribed
    to each topic prefix ("" = everything), a CURVE client on tcp when `curve` is given.

    `reconnect_ivl_max_ms` lower than the default for a local link that must
    hear a restarted publisher again within seconds (the systemd watchdog).
    """
    sock = make_socket(ctx, zmq.SUB, linger_ms=NO_LINGER_MS, rcvhwm=rcvhwm, max_message=MAX_PUBLISHED_BYTES)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, reconnect_ivl_max_ms)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    connect(sock, endpoint, curve)
    return sock


# The MQTT bridge's SUB: track and source events and stats of every process. Generous, because the
# bridge may fall behind while paho reconnects; past it the daemon's XPUB drops for this subscriber
# alone (bus.publish_hwm), and capture never waits (docs/mqtt.md).
MQTT_BRIDGE_RCVHWM = 10_000
MQTT_BRIDGE_TOPICS = (wire.TOPIC_TRACK + ".", wire.TOPIC_EVENT + ".", wire.TOPIC_STATS)


def bridge_subscriber(ctx: zmq.Context, endpoint: str, curve: ClientCurve | None = None) -> zmq.Socket:
    """The MQTT bridge's SUB on a daemon's publish endpoint (its own publish_local, or a remote
    tcp publish as a CURVE client): track.*, event.* and stats, RCVHWM = MQTT_BRIDGE_RCVHWM."""
    return subscriber(ctx, endpoint, MQTT_BRIDGE_TOPICS, rcvhwm=MQTT_BRIDGE_RCVHWM, curve=curve)


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


# ---------------------------------------------------------------- CURVE (docs/operations.md, "Secure")

# The ZAP domain of every CURVE server socket. ZAP_ENFORCE_DOMAIN makes a server
# without a running authenticator refuse every client (libzmq's default would be
# to let any CURVE client in), so a missing authenticator fails closed.
ZAP_DOMAIN = "textwatch"


def is_local(endpoint: str) -> bool:
    """ipc and inproc endpoints: protected by the file system (the 0700 runtime folder), never CURVE."""
    return endpoint.startswith(("ipc://", "inproc://"))


def _key_file(path: Path, what: str) -> tuple[bytes, bytes | None]:
    """(public, secret or None) of a zmq key file; ConfigError naming the setting when unusable."""
    if not Path(path).is_file():
        raise ConfigError(f"{what} {path}: no such file")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(f"{what} {path}: {reason}") from None
    return public, secret


def load_secret_key(path: Path, what: str) -> tuple[bytes, bytes]:
    """(public, secret) from a .key_secret file that only its owner can read (like ssh, others are refused)."""
    try:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
    except OSError as err:
        raise ConfigError(f"{what} {path}: {err.strerror}") from None
    if mode & 0o077:
        raise ConfigError(f"{what} {path} is readable by others (mode {mode:04o}): chmod 600 {path}")
    public, secret = _key_file(path, what)
    if secret is None:
        raise ConfigError(f"{what} {path} holds no secret key (give the .key_secret file)")
    return public, secret


def load_public_key(path: Path, what: str) -> bytes:
    return _key_file(path, what)[0]


@dataclass(frozen=True)
class ServerCurve:
    """A binding process's CURVE keys: its key pair and the folder of allowed client public keys."""

    public_key: bytes
    secret_key: bytes = field(repr=False)
    allowed_keys: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerCurve | None:
        """None when bus.curve_secret_key is unset (config validation allowed that only on loopback)."""
        b = settings.bus
        if b.curve_secret_key is None:
            return None
        if b.curve_allowed_keys is None or not Path(b.curve_allowed_keys).is_dir():
            raise ConfigError(f"bus.curve_allowed_keys {b.curve_allowed_keys}: not a folder of client .key files")
        public, secret = load_secret_key(b.curve_secret_key, "bus.curve_secret_key")
        # Regression: one unparsable .key made pyzmq's authenticator refuse every client, valid ones too.
        for key in sorted(Path(b.curve_allowed_keys).glob("*.key")):
            _key_file(key, "bus.curve_allowed_keys")
        return cls(public, secret, Path(b.curve_allowed_keys))

    def apply(self, sock: zmq.Socket) -> None:
        """Make the binds that follow CURVE server binds, authenticated through ZAP_DOMAIN."""
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key)
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt_string(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


@dataclass(frozen=True)
class ClientCurve:
    """A client's CURVE keys: its own key pair and the server's public key (which it verifies)."""

    public_key: bytes
    secret_key: bytes = field(repr=False)
    server_key: bytes

    @classmethod
    def from_files(cls, secret_key: Path, server_key: Path, what: str = "bus.curve_client_secret_key") -> ClientCurve:
        public, secret = load_secret_key(secret_key, what)
        return cls(public, secret, load_public_key(server_key, "bus.curve_server_key"))

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientCurve | None:
        """None when bus.curve_client_secret_key is unset (config validation keeps the pair together)."""
        b = settings.bus
        if b.curve_client_secret_key is None or b.curve_server_key is None:
            return None
        return cls.from_files(b.curve_client_secret_key, b.curve_server_key)

    def apply(self, sock: zmq.Socket) -> None:
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key)
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_key)


def start_authenticator(ctx: zmq.Context, curve: ServerCurve) -> ThreadAuthenticator:
    """The ZAP handler of `ctx` (one per context): admits the public keys in curve.allowed_keys.

    The folder is read once, here: a key added or removed takes effect at the
    next start of the process. Stop it (`.stop()`) before ctx.term().
    """
    authenticator = ThreadAuthenticator(ctx)
    authenticator.start()
    try:
        authenticator.configure_curve(domain=ZAP_DOMAIN, location=str(curve.allowed_keys))
    except BaseException:
        authenticator.stop()
        raise
    return authenticator


class AuthenticatedSocket(zmq.Socket):
    """The crops PUSH: it owns its context's ZAP authenticator (stopped when the socket is closed)
    and, until a worker has joined, a monitor of worker handshakes (wait_for_worker)."""

    authenticator: ThreadAuthenticator | None = None
    handshakes: zmq.Socket | None = None

    def stop_watching(self) -> None:
        if self.handshakes is not None:
            self.disable_monitor()
            self.handshakes.close(0)
            self.handshakes = None

    def close(self, linger: int | None = None) -> None:
        if not self.closed:
            self.stop_watching()
        super().close(linger)
        if self.authenticator is not None:
            self.authenticator.stop()
            self.authenticator = None


def bind(sock: zmq.Socket, endpoints: list[str], curve: ServerCurve | None) -> None:
    """Bind ipc endpoints plain (and make their socket files 0600), then the tcp ones, as CURVE server when `curve`.

    The order matters: libzmq copies the socket's options into each listener at
    bind time, so only the binds after `curve.apply` speak CURVE. A tcp endpoint
    beyond loopback without `curve` is refused here too, not only by the config.
    """
    local = [e for e in endpoints if is_local(e)]
    remote = [e for e in endpoints if not is_local(e)]
    for endpoint in local:
        sock.bind(endpoint)
        if endpoint.startswith("ipc://") and not endpoint.startswith("ipc://@"):  # @: abstract, no file
            os.chmod(endpoint[len("ipc://"):], 0o600)
    if curve is not None and remote:
        curve.apply(sock)
    for endpoint in remote:
        if curve is None and binds_beyond_loopback(endpoint):
            raise ConfigError(f"{endpoint} binds beyond loopback without CURVE keys (bus.curve_secret_key)")
        sock.bind(endpoint)


def connect(sock: zmq.Socket, endpoint: str, curve: ClientCurve | None) -> None:
    """Connect, as a CURVE client when `curve` is given and the endpoint is tcp (ipc is never CURVE);
    on ipc with its reconnect backoff capped at LOCAL_RECONNECT_IVL_MAX_MS."""
    if curve is not None and not is_local(endpoint):
        curve.apply(sock)
    if is_local(endpoint):
        if sock.getsockopt(zmq.RECONNECT_IVL_MAX) > LOCAL_RECONNECT_IVL_MAX_MS:  # 0 = no backoff at all
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, LOCAL_RECONNECT_IVL_MAX_MS)
    sock.connect(endpoint)


def check_curve(settings: Settings) -> None:
    """`textwatch check`: the configured key files and allow-list are usable (ConfigError otherwise)."""
    ServerCurve.from_settings(settings)
    ClientCurve.from_settings(settings)
