"""The voxloop server: one ASGI app (FastAPI on uvicorn) for every route.

Routes: ``/ws`` (voxloop protocol v1 sessions, docs/protocol.md), ``/twilio/voice`` (the TwiML
webhook, GET or POST) and ``/twilio/media`` (a phone call's media stream, docs/telephony.md),
``/healthz`` (JSON), ``/metrics`` (Prometheus), OpenAPI docs at ``/docs``, and the static frontend at
``/``. REST routes live under ``/v1/``. uvicorn runs the WebSockets with its ``websockets-sansio``
implementation, so the ``websockets`` package's own protocol object frames every message.

Models are loaded once, before the port opens, and shared by every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import resource
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.websockets import WebSocketDisconnect

from agent import __version__
from agent.config import Settings
from agent.engines import Engines
from agent.tts.voiced import VoicedTts
from streaming import rest
from streaming.connection import Codec, Connection, Stats, Wire
from streaming.protocols.openai_realtime import RealtimeCodec
from streaming.protocols.phone import PhoneCodec
from streaming.protocols.twilio import TwilioSerializer, twiml_connect
from streaming.protocols.voxloop import PROTOCOL_VERSION, VoxloopCodec
from streaming.rtc import offer_loopback_candidates

log = logging.getLogger(__name__)

FRONTEND_DIR = Path(__file__).resolve().parent.parent / "frontend"
WS_PATH = "/ws"
TWILIO_MEDIA_PATH = "/twilio/media"
REALTIME_PATH = "/v1/realtime"  # the OpenAI Realtime API (docs/realtime.md)
TWIML_PATH = "/twilio/voice"  # the incoming-call webhook


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return peak_rss_mb()


class StarletteSocket:
    """A Starlette WebSocket as a connection's ``WireSocket``."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def receive(self) -> Wire | None:
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text: str | None = message.get("text")
        return text if text is not None else bytes(message.get("bytes") or b"")

    async def send(self, message: Wire) -> None:
        if isinstance(message, str):
            await self._ws.send_text(message)
        else:
            await self._ws.send_bytes(message)

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)


class _StatsCollector(Collector):
    """The process counters, read at scrape time."""

    def __init__(self, stats: Stats, engines: Engines) -> None:
        self._stats = stats
        self._engines = engines

    def collect(self) -> Any:
        s = self._stats
        yield GaugeMetricFamily("voxloop_sessions_active", "sessions connected now", s.sessions_active)
        yield CounterMetricFamily("voxloop_sessions", "sessions since start", s.sessions_total)
        yield CounterMetricFamily("voxloop_turns_answered", "replies completed", s.turns_answered)
        yield CounterMetricFamily("voxloop_errors", "error events sent", s.errors_sent)
        yield CounterMetricFamily(
            "voxloop_input_frames_dropped", "input frames dropped", s.input_frames_dropped
        )
        yield CounterMetricFamily(
            "voxloop_output_frames_dropped", "audio frames dropped for slow clients", s.output_frames_dropped
        )
        by_code = CounterMetricFamily("voxloop_errors_by_code", "error events by code", labels=["code"])
        for code, n in sorted(s.by_code.items()):
            by_code.add_metric([code], n)
        yield by_code
        pending = GaugeMetricFamily(
            "voxloop_model_queue", "model requests queued or running", labels=["role"]
        )
        dropped = CounterMetricFamily(
            "voxloop_model_requests_dropped", "cancelled before they ran", labels=["role"]
        )
        for queue in self._engines.queues():
            pending.add_metric([queue.name], queue.pending)
            dropped.add_metric([queue.name], queue.dropped)
        yield pending
        yield dropped
        yield GaugeMetricFamily("voxloop_rss_bytes", "resident memory", current_rss_mb() * 2**20)


def create_app(settings: Settings, engines: Engines, frontend_dir: Path = FRONTEND_DIR) -> FastAPI:
    stats = Stats()
    registry = CollectorRegistry()
    registry.register(_StatsCollector(stats, engines))
    app = FastAPI(title="voxloop", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.stats = stats

    async def serve(ws: WebSocket, codec: Codec) -> None:
        await ws.accept()
        try:
            await Connection(StarletteSocket(ws), codec, engines, settings, stats).run()
        except WebSocketDisconnect:
            pass

    @app.websocket(WS_PATH)
    async def session(ws: WebSocket) -> None:
        await serve(ws, VoxloopCodec())

    @app.websocket(REALTIME_PATH)
    async def realtime(ws: WebSocket) -> None:
        keys = settings.server.keys()
        if keys:  # the SDK always sends a key; with none configured the endpoint is open (on 127.0.0.1)
            scheme, _, key = ws.headers.get("authorization", "").partition(" ")
            given = key.encode()  # bytes: compare_digest refuses str with non-ASCII characters
            if scheme.lower() != "bearer" or not any(hmac.compare_digest(given, k.encode()) for k in keys):
                await ws.close(code=1008, reason="invalid API key")  # before accept: HTTP 403
                return
        model = ws.query_params.get("model", "voxloop")
        tts = engines.tts.model
        voice = tts.default_voice if isinstance(tts, VoicedTts) else ""
        await serve(ws, RealtimeCodec(model, settings.llm.system_prompt, voice))

    @app.websocket(TWILIO_MEDIA_PATH)
    async def phone_call(ws: WebSocket) -> None:
        await serve(ws, PhoneCodec(TwilioSerializer(), settings))

    @app.api_route(TWIML_PATH, methods=["GET", "POST"], response_class=Response)
    async def twiml(request: Request) -> Response:
        """The TwiML for an incoming call: connect it to this server's media stream."""
        url = settings.phone.stream_url
        if not url:
            host = request.headers.get("host", f"{settings.server.host}:{settings.server.port}")
            url = f"wss://{host}{TWILIO_MEDIA_PATH}"
        return Response(twiml_connect(url), headers={"content-type": "text/xml"})

    @app.get("/healthz")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "sessions": stats.sessions_active,
            "models": engines.names,
            "rss_mb": round(current_rss_mb(), 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), headers={"content-type": CONTENT_TYPE_LATEST})

    app.include_router(rest.router(settings, engines))
    app.add_exception_handler(RequestValidationError, rest.invalid_request)
    app.mount("/", StaticFiles(directory=frontend_dir, html=True), name="frontend")
    return app


class _Server(uvicorn.Server):
    """uvicorn's server with voxloop's own signal handling (serve_forever sets ``should_exit``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_forever(settings: Settings, engines: Engines) -> None:
    """Listen until SIGINT/SIGTERM; then close every session and return."""
    offer_loopback_candidates(settings.webrtc.loopback_candidates)
    app = create_app(settings, engines)
    # uvicorn binds host and port itself, through loop.create_server: a socket made there is an
    # IPPROTO_TCP one, on whose connections asyncio turns Nagle off (TCP_NODELAY). A socket from
    # socket.create_server has proto 0, asyncio skips it, and every small audio frame after another
    # waited for an ACK: +10 ms on a turn's first audio (measured).
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        ws="websockets-sansio",
        ws_max_size=settings.server.max_message_bytes,
        ws_per_message_deflate=False,  # PCM does not compress; deflate only adds latency
        http="h11",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        headers=[("server", f"voxloop/{__version__}")],
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    serving = asyncio.create_task(server.serve(), name="uvicorn")
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no started event
        await asyncio.sleep(0.01)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        log.info("serving on http://%s:%d (WebSocket %s); peak RSS with models %.0f MB",
                 settings.server.host, port, WS_PATH, peak_rss_mb())  # fmt: skip
    await serving
    log.info("stopped")
