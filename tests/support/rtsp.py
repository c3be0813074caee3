"""A real RTSP server for tests: serves a video file, looped forever, as H.264 over RTSP.

Run as a module with Debian's /usr/bin/python3 (not the venv: it needs
python3-gi and gir1.2-gst-rtsp-server-1.0 from the system), from tests/:

    cd tests && /usr/bin/python3 -m support.rtsp VIDEO --port 8554 --path /cam [--user U --password P]

It decodes VIDEO once into memory (keep test clips small), then feeds the raw
frames round and round into an appsrc with steadily increasing timestamps, so
the stream never ends and never jumps back in time (re-seeking a file source
would). x264enc with tune=zerolatency and a keyframe every second lets a client
join quickly. It prints "READY" on stdout once it listens and exits on SIGTERM.
With --user/--password it requires basic auth, so tests can put a password in
the URL and check that it is redacted everywhere.

Tests use `RtspServer` from this module (under the venv) to run the server as a
subprocess. Both sides import only the standard library and support.ports at the
top, so the system Python can import this module too.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from support.ports import free_port

SYSTEM_PYTHON = "/usr/bin/python3"
TESTS = Path(__file__).resolve().parents[1]  # the folder holding the support package
MAX_FRAMES = 600  # bound on the decoded clip held in memory
DECODE_TIMEOUT_S = 30.0


# ---------------------------------------------------------------- the fixture side (venv)


def server_available() -> str | None:
    """None when the system Python has GstRtspServer and x264enc, else why not."""
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "import sys; sys.exit(0 if Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('appsrc') else 3)"
    )
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is absent"
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "probing GStreamer timed out"
    if result.returncode != 0:
        return "python3-gi, gir1.2-gst-rtsp-server-1.0 or gstreamer1.0-plugins-ugly (x264enc) is missing"
    return None


class RtspServer:
    """The server script as a subprocess; `start()`/`stop()` may repeat on the same port.

    Use as a context manager so the process is always killed at teardown:

        with RtspServer(clip, user="admin", password="s3cret") as server:
            url = server.url  # rtsp://admin:s3cret@127.0.0.1:PORT/cam
    """

    def __init__(
        self,
        video: str | Path,
        *,
        port: int | None = None,
        path: str = "/cam",
        user: str | None = None,
        password: str | None = None,
        ready_timeout_s: float = 30.0,
    ) -> None:
        self.video = Path(video)
        self.port = port or free_port()
        self.path = path if path.startswith("/") else "/" + path
        self.user = user
        self.password = password
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()

    @property
    def url(self) -> str:
        credentials = f"{self.user}:{self.password}@" if self.user is not None else ""
        return f"rtsp://{credentials}127.0.0.1:{self.port}{self.path}"

    def start(self) -> None:
        """Start the server and wait (bounded) until it prints READY."""
        if self.process is not None:
            raise RuntimeError("RTSP server already running")
        command = [SYSTEM_PYTHON, "-m", "support.rtsp", str(self.video), "--port", str(self.port), "--path", self.path]
        if self.user is not None:
            command += ["--user", self.user, "--password", self.password or ""]
        # The system Python with none of the venv's settings, and tests/ on its path for `-m support.rtsp`.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PYTHONPATH"] = str(TESTS)
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + self.ready_timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not selector.select(timeout=left):
                    continue
                line = self.process.stdout.readline()
                if line.strip() == b"READY":
                    return
                if not line:  # the process exited
                    break
        raise RuntimeError(f"RTSP server did not become ready: {self.stderr_tail()}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit within `timeout_s`."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout_s)
        if process.stdout is not None:
            process.stdout.close()

    def stderr_tail(self, limit: int = 2000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._stderr.close()


# ---------------------------------------------------------------- the server side (/usr/bin/python3)


def decode_frames(Gst, video: Path) -> tuple[object, list[bytes], int, int]:  # noqa: N803 - the Gst module
    """All frames of `video` as I420 bytes, with their caps and the clip's frame rate."""
    pipeline = Gst.parse_launch(
        f'filesrc location="{video}" ! decodebin ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false'
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    frames: list[bytes] = []
    caps = None
    deadline = time.monotonic() + DECODE_TIMEOUT_S
    try:
        while len(frames) < MAX_FRAMES and time.monotonic() < deadline:
            sample = sink.emit("try-pull-sample", Gst.SECOND)
            if sample is None:
                if sink.get_property("eos"):
                    break
                continue
            caps = sample.get_caps()
            buffer = sample.get_buffer()
            ok, info = buffer.map(Gst.MapFlags.READ)
            if ok:
                frames.append(bytes(info.data))
                buffer.unmap(info)
    finally:
        pipeline.set_state(Gst.State.NULL)
    if caps is None or not frames:
        raise SystemExit(f"no frames decoded from {video}")
    structure = caps.get_structure(0)
    ok, num, den = structure.get_fraction("framerate")
    fps_num, fps_den = (num, den) if ok and num > 0 and den > 0 else (10, 1)
    return caps, frames, fps_num, fps_den


def serve(args: argparse.Namespace) -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    caps, frames, fps_num, fps_den = decode_frames(Gst, Path(args.video))
    duration = Gst.util_uint64_scale_int(Gst.SECOND, fps_den, fps_num)
    keyframes = max(1, round(fps_num / fps_den))

    def on_media_configure(_factory, media) -> None:
        source = media.get_element().get_by_name("src")
        source.set_property("caps", caps)
        state = {"index": 0}

        def on_need_data(appsrc, _length) -> None:
            index = state["index"]
            buffer = Gst.Buffer.new_wrapped(frames[index % len(frames)])
            buffer.pts = index * duration
            buffer.duration = duration
            state["index"] = index + 1
            appsrc.emit("push-buffer", buffer)

        source.connect("need-data", on_need_data)

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( appsrc name=src format=time is-live=false ! videoconvert ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={keyframes} ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    factory.connect("media-configure", on_media_configure)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", args.user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role(args.user, "media.factory.access", True)
        permissions.add_permission_for_role(args.user, "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.path, factory)

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    print("READY", flush=True)
    loop.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a video file, looped, over RTSP (tests only).")
    parser.add_argument("video", help="video file to serve")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--path", default="/cam", help="mount point, e.g. /cam")
    parser.add_argument("--user", default=None, help="require basic auth with this user")
    parser.add_argument("--password", default="", help="password of --user")
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
