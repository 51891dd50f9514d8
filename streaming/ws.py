"""The WebSocket PCM transport: one connection is one session.

Inbound: JSON control frames and binary PCM at the client's input rate, resampled to 16 kHz here.
Outbound: one ordered queue, drained by one writer task, carries both the JSON events and the paced
binary audio frames, so an ``audio.clear`` can never overtake audio of its own turn or be overtaken.
Bad input gets an ``error`` event with a code; the session goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from agent.config import Settings
from agent.engines import Engines
from agent.errors import ProtocolError, VoxloopError
from agent.events import Error, Event, SessionReady
from agent.session import INPUT_RATE, Session
from streaming.audio import Pcm, StreamResampler, pcm_from_bytes
from streaming.playout import PacedOutput
from streaming.protocol import (
    InputCommit,
    Ping,
    PlaybackPosition,
    ResponseCancel,
    Say,
    SessionUpdate,
    TextInput,
    WebRtcOffer,
    encode_answer,
    encode_event,
    encode_pong,
    parse_client,
)
from streaming.rtc import RTC_RATE, RtcPeer

log = logging.getLogger(__name__)


@dataclass
class Stats:
    """Process-wide counters for /healthz and /metrics."""

    sessions_active: int = 0
    sessions_total: int = 0
    turns_answered: int = 0
    errors_sent: int = 0
    input_frames_dropped: int = 0
    by_code: dict[str, int] = field(default_factory=dict)


async def stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel a connection's tasks and wait until each has ended (a closed socket is no error)."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await task


class WsSession:
    def __init__(self, ws: ServerConnection, engines: Engines, settings: Settings, stats: Stats) -> None:
        self.ws = ws
        self.engines = engines
        self.settings = settings
        self.stats = stats
        self.id = uuid.uuid4().hex[:12]
        self._outbound: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.session: Session | None = None
        self.output: PacedOutput | None = None
        self._input_rate = 0
        self._resampler: StreamResampler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.peer: RtcPeer | None = None  # audio over WebRTC instead of binary frames

    async def run(self) -> None:
        """Serve the connection until the client goes away; then stop every task and await it."""
        self.stats.sessions_active += 1
        self.stats.sessions_total += 1
        writer = asyncio.create_task(self._writer(), name=f"{self.id}-writer")
        log.info("session %s: connected from %s", self.id, self.ws.remote_address)
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    self._on_text(message)
                else:
                    self._on_audio(message)
                if writer.done():
                    break
        except ConnectionClosed:
            pass
        finally:
            await stop_tasks([*self._tasks, writer])
            if self.peer is not None:
                await self.peer.close()
            self.stats.sessions_active -= 1
            if self.session is not None:
                self.stats.turns_answered += self.session.turns_answered
                self.stats.input_frames_dropped += self.session.dropped_input_frames
            log.info("session %s: closed", self.id)

    # -- inbound ----------------------------------------------------------------------------------
    def _on_text(self, raw: str) -> None:
        try:
            message = parse_client(raw)
            match message:
                case SessionUpdate():
                    self._configure(message)
                case Ping(id=ident):
                    self._outbound.put_nowait(encode_pong(ident))
                case InputCommit():
                    self._require_session().commit()
                case ResponseCancel():
                    self._require_session().cancel_response()
                case TextInput(text=text):
                    self._require_session().send_text(text)
                case Say(text=text):
                    self._require_session().send_text(text, verbatim=True)
                case PlaybackPosition(turn_id=tid, played_s=played):
                    self._require_session().report_playback(tid, played)
                case WebRtcOffer(sdp=sdp):
                    self._require_session()
                    if self.peer is None:
                        raise ProtocolError(
                            'webrtc.offer needs a session opened with "audio": "webrtc"', code="not_webrtc"
                        )
                    self._tasks.append(asyncio.create_task(self._answer(self.peer, sdp)))
        except VoxloopError as e:
            self._error(e)

    async def _answer(self, peer: RtcPeer, sdp: str) -> None:
        try:
            self._outbound.put_nowait(encode_answer(await peer.answer(sdp)))
        except VoxloopError as e:
            self._error(e)

    def _on_rtc_audio(self, pcm: Pcm, sample_rate: int) -> None:
        if self.session is None:
            return
        if self._resampler is None or self._input_rate != sample_rate:
            self._input_rate, self._resampler = sample_rate, StreamResampler(sample_rate, INPUT_RATE)
        self.session.push_audio(self._resampler.process(pcm), time.monotonic())

    def _on_audio(self, data: bytes) -> None:
        received_at = time.monotonic()
        try:
            session = self._require_session(code="audio_before_config")
            if self.peer is not None:
                raise ProtocolError(
                    "this session takes its audio over WebRTC; binary frames are dropped",
                    code="not_websocket",
                )
            pcm = pcm_from_bytes(data, self._input_rate)
        except VoxloopError as e:
            self._error(e)
            return
        assert self._resampler is not None  # noqa: S101 - set together with the session
        session.push_audio(self._resampler.process(pcm), received_at)

    def _configure(self, message: SessionUpdate) -> None:
        if self.session is not None:
            audio = "webrtc" if self.peer is not None else "websocket"
            if message.input_sample_rate or message.output_sample_rate or message.audio not in (None, audio):
                raise ProtocolError(
                    "sample rates and the audio path are fixed once the session is configured; "
                    "reconnect to change them",
                    code="already_configured",
                )
            if message.system_prompt is not None:
                self.session.memory.system_prompt = message.system_prompt
            if message.profile is not None:
                self.session.set_profile(message.profile)
            return
        if message.audio == "webrtc":
            self.peer = RtcPeer(self.settings, self._on_rtc_audio, self.id)
            self._input_rate = output_rate = RTC_RATE
            self.output = PacedOutput(
                RTC_RATE,
                self.peer.track.push,
                lead_s=self.settings.webrtc_playout_lead_s,
                on_clear=self.peer.track.clear,
            )
        else:
            self._input_rate = message.input_sample_rate or 16000
            output_rate = message.output_sample_rate or 24000
            self.output = PacedOutput(
                output_rate, self._outbound.put_nowait, lead_s=self.settings.playout_lead_s
            )
        self._resampler = StreamResampler(self._input_rate, INPUT_RATE)
        self.session = Session(
            self.engines,
            self.settings,
            self.output,
            self._emit,
            session_id=self.id,
            system_prompt=message.system_prompt,
            profile=message.profile,
        )
        self._tasks.append(asyncio.create_task(self.output.run(), name=f"{self.id}-playout"))
        self._tasks.append(asyncio.create_task(self._run_session(self.session), name=f"{self.id}-session"))
        ready = SessionReady(
            0, self.id, self._input_rate, output_rate, self.engines.names, self.session.profile
        )
        self._emit(ready)

    async def _run_session(self, session: Session) -> None:
        try:
            await session.run()
        except* VoxloopError as group:
            for e in group.exceptions:
                assert isinstance(e, VoxloopError)  # noqa: S101 - narrowed by except*
                self._error(e)
        except* Exception:
            log.exception("session %s: crashed", self.id)
            self._emit(Error(0, "internal_error", "the session failed; please reconnect", fatal=True))
            self._outbound.put_nowait(None)

    def _require_session(self, code: str = "not_configured") -> Session:
        if self.session is None:
            raise ProtocolError("send session.update before anything else", code=code)
        return self.session

    # -- outbound ---------------------------------------------------------------------------------
    def _emit(self, event: Event) -> None:
        self._outbound.put_nowait(encode_event(event))

    def _error(self, e: VoxloopError) -> None:
        self.stats.errors_sent += 1
        self.stats.by_code[e.code] = self.stats.by_code.get(e.code, 0) + 1
        log.info("session %s: error %s: %s", self.id, e.code, e.message)
        turn = self.session.turns.turn_id if self.session is not None else 0
        self._emit(Error(turn, e.code, e.message, e.fatal))

    async def _writer(self) -> None:
        while (item := await self._outbound.get()) is not None:
            await self.ws.send(item)
        await self.ws.close(1011, "session failed")
