"""The voxloop server: one ``websockets`` server for the WebSocket sessions and a few plain HTTP routes.

Routes: ``/ws`` (WebSocket sessions, docs/protocol.md), ``/healthz`` (JSON), ``/metrics`` (Prometheus
text), and the static frontend at ``/``. Models are loaded once, before the port opens, and shared.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import resource
import signal
from http import HTTPStatus
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from agent import __version__
from agent.config import Settings
from agent.engines import Engines
from streaming.protocol import PROTOCOL_VERSION
from streaming.rtc import offer_loopback_candidates
from streaming.telephony.call import CallSession
from streaming.telephony.twilio import TwilioSerializer, twiml_connect
from streaming.ws import Stats, WsSession

TWILIO_MEDIA_PATH = "/twilio/media"
TWIML_PATH = "/twilio/voice"  # the incoming-call webhook (configure it as HTTP GET)
PHONE_MEDIA_PATHS = {TWILIO_MEDIA_PATH: TwilioSerializer}

log = logging.getLogger(__name__)

FRONTEND_DIR = Path(__file__).resolve().parent.parent / "frontend"
WS_PATH = "/ws"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return peak_rss_mb()


class VoxloopServer:
    def __init__(self, settings: Settings, engines: Engines, frontend_dir: Path = FRONTEND_DIR) -> None:
        self.settings = settings
        self.engines = engines
        self.stats = Stats()
        self.frontend_dir = frontend_dir

    async def handler(self, ws: ServerConnection) -> None:
        path = ws.request.path.split("?", 1)[0] if ws.request is not None else WS_PATH
        if path in PHONE_MEDIA_PATHS:
            await CallSession(ws, self.engines, self.settings, self.stats, PHONE_MEDIA_PATHS[path]()).run()
        else:
            await WsSession(ws, self.engines, self.settings, self.stats).run()

    def health(self) -> dict[str, object]:
        return {
            "status": "ok",
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "sessions": self.stats.sessions_active,
            "models": self.engines.names,
            "rss_mb": round(current_rss_mb(), 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }

    def twiml(self, request: Request) -> str:
        """The TwiML for an incoming call: connect it to this server's media stream."""
        url = self.settings.phone_stream_url
        if not url:
            host = request.headers.get("Host", f"{self.settings.host}:{self.settings.port}")
            url = f"wss://{host}{TWILIO_MEDIA_PATH}"
        return twiml_connect(url)

    def metrics(self) -> str:
        s = self.stats
        lines = [
            f"voxloop_sessions_active {s.sessions_active}",
            f"voxloop_sessions_total {s.sessions_total}",
            f"voxloop_turns_answered_total {s.turns_answered}",
            f"voxloop_errors_total {s.errors_sent}",
            f"voxloop_input_frames_dropped_total {s.input_frames_dropped}",
            f"voxloop_rss_bytes {int(current_rss_mb() * 2**20)}",
        ]
        lines += [f'voxloop_errors_by_code_total{{code="{c}"}} {n}' for c, n in sorted(s.by_code.items())]
        return "\n".join(lines) + "\n"

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == WS_PATH or path in PHONE_MEDIA_PATHS:
            return None  # the WebSocket handshake goes on (a plain GET gets 426 from websockets)
        if path == TWIML_PATH:
            return _response(HTTPStatus.OK, self.twiml(request).encode(), "text/xml")
        if path == "/healthz":
            return _response(HTTPStatus.OK, json.dumps(self.health()).encode(), "application/json")
        if path == "/metrics":
            return _response(HTTPStatus.OK, self.metrics().encode(), "text/plain; version=0.0.4")
        return self._static(path)

    def _static(self, path: str) -> Response:
        name = "index.html" if path in ("", "/") else path.lstrip("/")
        root = self.frontend_dir.resolve()
        target = (root / name).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if target.suffix == ".js":
            kind = "text/javascript"
        return _response(HTTPStatus.OK, target.read_bytes(), kind)


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    )
    return Response(status.value, status.phrase, headers, body)


async def serve_forever(settings: Settings, engines: Engines) -> None:
    """Listen until SIGINT/SIGTERM; then close every session and return."""
    app = VoxloopServer(settings, engines)
    offer_loopback_candidates(settings.webrtc_loopback_candidates)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with serve(
        app.handler,
        settings.host,
        settings.port,
        process_request=app.process_request,
        max_size=settings.max_message_bytes,
        compression=None,  # PCM does not compress; deflate only adds latency
        server_header=f"voxloop/{__version__}",
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        log.info(
            "serving on http://%s:%d (WebSocket %s); peak RSS with models %.0f MB",
            settings.host,
            port,
            WS_PATH,
            peak_rss_mb(),
        )
        await stop.wait()
    log.info("stopped")
