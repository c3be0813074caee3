"""`textwatch view`: one page to watch and search, and a REST API for the same history queries.

aiohttp (one well-kept dependency, asyncio, no build step): many pages can
hold an event stream open at once without a thread each, which the stdlib
http.server would need. The page is plain HTML/CSS/JS from view/static/.

    GET /                               the page (static/index.html)
    GET /static/NAME                    its script and style
    GET /api/events                     server-sent events: status, frame, track, source
    GET /api/status                     cameras and counters (JSON)
    GET /api/cameras/CAMERA/frame.jpg   the newest snapshot of a camera (404 unknown camera, 503 none yet)
    GET /api/history?q=&fuzzy=&camera=&since=&until=&limit=   hits as JSON (history/query.py)
    GET /api/history.csv?...            the same hits as CSV
    GET /api/history/ID/crop.jpg        the crop picture of a hit

Bad input is a 4xx with a one-line JSON {"error": ...}. The history database is
opened read-only per request; the live data comes from one bus thread
(live.py). Beyond loopback a token is required (view.token; the config
refuses such a listen without one): `?token=` (the page then keeps it in an
HttpOnly cookie), the cookie, or `Authorization: Bearer TOKEN`. Every answer
carries a Content-Security-Policy that allows only this origin's scripts, and
the page writes every text with textContent: an OCR'd `<script>` stays text.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from textwatch import bus
from textwatch.config import Settings
from textwatch.history.query import (
    HistoryQuery,
    HistoryReader,
    HistoryUnavailable,
    QueryError,
    csv_text,
    hit_dict,
    parse_query,
)
from textwatch.history.store import database_path
from textwatch.log import get_logger
from textwatch.view.live import BusListener, LiveState

PAGE_QUEUE = 100  # events queued per open page; a page further behind misses some (counted)
KEEPALIVE_S = 15.0
COOKIE = "textwatch_token"
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'"
STATIC = resources.files("textwatch.view") / "static"


@dataclass
class View:
    """Everything the handlers share: settings, the database path, the live state and the open pages."""

    settings: Settings
    database: Path
    endpoint: str
    curve: bus.ClientCurve | None
    live: LiveState
    pages: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = field(default_factory=set)
    listener: BusListener | None = None

    @property
    def cameras(self) -> list[str]:
        return [camera.id for camera in self.settings.cameras]

    def deliver(self, kind: str, data: dict[str, Any]) -> None:
        """On the loop: one event to every open page; a full page queue drops it (counted)."""
        for queue in self.pages:
            try:
                queue.put_nowait((kind, data))
            except asyncio.QueueFull:
                self.live.counters.events_dropped += 1


def build_app(view: View) -> web.Application:
    app = web.Application(middlewares=[errors_as_json, token_check(view.settings.view.token), security_headers])
    app["view"] = view
    app.router.add_get("/", page)
    app.router.add_static("/static/", Path(str(STATIC)), show_index=False)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/status", status)
    app.router.add_get("/api/cameras/{camera}/frame.jpg", frame_jpeg)
    app.router.add_get("/api/history", history_json)
    app.router.add_get("/api/history.csv", history_csv)
    app.router.add_get("/api/history/{id}/crop.jpg", crop_jpeg)
    app.on_startup.append(start_listener)
    app.on_shutdown.append(stop_listener)
    return app


# ---------------------------------------------------------------- middlewares


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors_as_json(request: web.Request, handler: Any) -> web.StreamResponse:
    """QueryError -> its 4xx; an unavailable database -> 503; aiohttp's own 404/405 as JSON too."""
    try:
        return await handler(request)
    except QueryError as err:
        return error(err.status, str(err))
    except HistoryUnavailable as err:
        return error(503, str(err))
    except web.HTTPException as err:
        if err.status >= 400:
            return error(err.status, err.reason)
        raise


def token_check(token: str) -> Any:
    """Requests without the token get 401; `/?token=T` sets the cookie the page's later requests carry."""

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if not token:
            return await handler(request)
        offered = [request.query.get("token", ""), request.cookies.get(COOKIE, "")]
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            offered.append(auth[len("Bearer "):])
        if not any(o and hmac.compare_digest(o.encode(), token.encode()) for o in offered):
            return error(401, "a token is required: ?token=, the textwatch_token cookie or Authorization: Bearer")
        response = await handler(request)
        if request.query.get("token") and not response.prepared:
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    return check


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


# ---------------------------------------------------------------- the page and its live data


async def page(request: web.Request) -> web.StreamResponse:
    return web.Response(body=(STATIC / "index.html").read_bytes(), content_type="text/html", charset="utf-8")


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: what is current first, then each change; a comment every KEEPALIVE_S."""
    view: View = request.app["view"]
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=PAGE_QUEUE)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"})
    await response.prepare(request)
    view.pages.add(queue)
    try:
        for kind, data in view.live.initial():
            await send_event(response, kind, data)
        while True:
            try:
                kind, data = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            await send_event(response, kind, data)
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the page went away, or the server stops
    finally:
        view.pages.discard(queue)
    return response


async def send_event(response: web.StreamResponse, kind: str, data: dict[str, Any]) -> None:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    await response.write(f"event: {kind}\ndata: {body}\n\n".encode())


async def status(request: web.Request) -> web.StreamResponse:
    view: View = request.app["view"]
    with view.live.lock:
        return web.json_response(view.live.status())


async def frame_jpeg(request: web.Request) -> web.StreamResponse:
    view: View = request.app["view"]
    camera = request.match_info["camera"]
    if camera not in view.live.cameras:
        raise QueryError(f"unknown camera {camera[:80]!r}", status=404)
    jpeg = view.live.newest_jpeg(camera)
    if jpeg is None:
        return error(503, f"no frame from camera {camera!r} yet")
    return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------- history


def query_of(request: web.Request) -> HistoryQuery:
    view: View = request.app["view"]
    return parse_query(dict(request.query), view.settings.view.max_range_days)


def search(view: View, query: HistoryQuery) -> list[Any]:
    with HistoryReader(view.database) as reader:
        return reader.search(query, view.cameras)


async def history_json(request: web.Request) -> web.StreamResponse:
    view: View = request.app["view"]
    query = query_of(request)
    hits = await asyncio.to_thread(search, view, query)
    return web.json_response({"count": len(hits), "hits": [hit_dict(hit) for hit in hits]},
                             dumps=lambda obj: json.dumps(obj, ensure_ascii=False))


async def history_csv(request: web.Request) -> web.StreamResponse:
    view: View = request.app["view"]
    query = query_of(request)
    hits = await asyncio.to_thread(search, view, query)
    return web.Response(text=csv_text(hits), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="textwatch-history.csv"'})


async def crop_jpeg(request: web.Request) -> web.StreamResponse:
    view: View = request.app["view"]
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise QueryError(f"track id {raw[:40]!r} is not a number")

    def read() -> bytes | None:
        with HistoryReader(view.database) as reader:
            return reader.crop(int(raw))

    jpeg = await asyncio.to_thread(read)
    if jpeg is None:
        return error(404, f"no crop picture for track {raw}")
    return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


# ---------------------------------------------------------------- running


async def start_listener(app: web.Application) -> None:
    view: View = app["view"]
    view.listener = BusListener(view.endpoint, view.curve, view.live, asyncio.get_running_loop(), view.deliver)
    view.listener.start()


async def stop_listener(app: web.Application) -> None:
    view: View = app["view"]
    if view.listener is not None:
        view.listener.stop()


def serve(settings: Settings, listen: str, endpoint: str, curve: bus.ClientCurve | None) -> None:
    """Run until SIGINT/SIGTERM."""
    from textwatch.config import split_listen

    host, port = split_listen(listen)
    view = View(settings, database_path(settings.history), endpoint, curve, LiveState([c.id for c in settings.cameras]))
    get_logger().info("view_serving", url=f"http://{listen}/", database=str(view.database), bus=endpoint)
    web.run_app(build_app(view), host=host, port=port, print=None, access_log=None, shutdown_timeout=2.0)


def run_view(args: Any) -> int:
    """`textwatch view`: check the listen address and token rule, then serve until Ctrl-C."""
    from pydantic import ValidationError

    from textwatch.config import ViewSettings, load_settings
    from textwatch.errors import ConfigError, ExitCode

    settings = load_settings(args.config)
    listen = args.listen or settings.view.listen
    try:
        ViewSettings(listen=listen, token=settings.view.token, max_range_days=settings.view.max_range_days)
    except ValidationError as err:
        raise ConfigError(f"--listen {listen}: {err.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    serve(settings, listen, args.endpoint or settings.bus.publish, bus.ClientCurve.from_settings(settings))
    return int(ExitCode.OK)
