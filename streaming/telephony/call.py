"""One phone call over a provider's media-stream WebSocket: one voxloop session, phone profile.

Inbound: 20 ms mu-law 8 kHz ``media`` -> 16-bit PCM -> 16 kHz (soxr) -> the session. Outbound: the
session's audio, paced in 20 ms frames at 8 kHz, mu-law encoded into ``media`` messages. Every
``MARK_EVERY_S`` of a reply's audio (and at its end) a ``mark`` named ``<turn>:<samples>`` follows
the media; the provider echoes it once the audio before it has played to the caller, and the session
takes that as the caller's playback position (what memory keeps when the caller cuts in). On barge-in
the session clears its queue and a ``clear`` goes out: the provider drops what it buffered.

Bad input (invalid base64, oversized payloads, media before ``start``, unknown events, a stream that
ends without ``stop``) is logged with the call id and dropped; the call goes on, and no other call
notices. Media streams have no error message to send back.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from agent.config import Settings
from agent.engines import Engines
from agent.errors import ProtocolError, VoxloopError
from agent.events import (
    DtmfReceived,
    Error,
    Event,
    ResponseAudioDone,
    ResponseAudioStarted,
    ResponseDone,
    TranscriptFinal,
)
from agent.session import INPUT_RATE, Session
from streaming.audio import StreamResampler, mulaw_decode, mulaw_encode
from streaming.playout import PacedOutput
from streaming.telephony.events import Connected, Dtmf, MarkPlayed, Media, Serializer, Started, Stopped
from streaming.ws import Stats, stop_tasks

log = logging.getLogger(__name__)

PHONE_RATE = 8000
MARK_EVERY_S = 0.2


class CallSession:
    def __init__(
        self, ws: ServerConnection, engines: Engines, settings: Settings, stats: Stats, serializer: Serializer
    ) -> None:
        self.ws = ws
        self.engines = engines
        self.settings = settings
        self.stats = stats
        self.serializer = serializer
        self.call_id = "(before start)"
        self.stream_id = ""
        self.session: Session | None = None
        self.output: PacedOutput | None = None
        self._resampler = StreamResampler(PHONE_RATE, INPUT_RATE)
        self._outbound: asyncio.Queue[str | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._turn: int | None = None  # the reply whose audio is going out
        self._turn_samples = 0
        self._marked_samples = 0
        self.marks_sent = 0
        self.marks_played = 0
        self.dropped_messages = 0

    async def run(self) -> None:
        """Serve the call until ``stop`` or the connection ends; then stop every task and await it."""
        self.stats.sessions_active += 1
        self.stats.sessions_total += 1
        writer = asyncio.create_task(self._writer(), name="call-writer")
        stopped = False
        try:
            async for raw in self.ws:
                if self._on_message(raw):
                    stopped = True
                    break
        except ConnectionClosed:
            pass
        finally:
            if not stopped:
                log.warning("call %s: the stream ended without 'stop'", self.call_id)
            await stop_tasks([*self._tasks, writer])
            self.stats.sessions_active -= 1
            if self.session is not None:
                self.stats.turns_answered += self.session.turns_answered
            log.info(
                "call %s: ended (%d marks sent, %d played back, %d bad messages dropped)",
                self.call_id,
                self.marks_sent,
                self.marks_played,
                self.dropped_messages,
            )

    # -- inbound ----------------------------------------------------------------------------------
    def _on_message(self, raw: str | bytes) -> bool:
        """Handle one message; True when the provider said the stream is over."""
        try:
            event = self.serializer.parse(raw)
            match event:
                case Connected():
                    pass
                case Started():
                    self._start(event)
                case Media(payload=payload):
                    session = self._require_session()
                    session.push_audio(self._resampler.process(mulaw_decode(payload)))
                case MarkPlayed(name=name):
                    self._mark_played(name)
                case Dtmf(digit=digit):
                    self._require_session().dtmf(digit)
                case Stopped():
                    log.info("call %s: stop", self.call_id)
                    return True
        except VoxloopError as e:
            self.dropped_messages += 1
            self.stats.errors_sent += 1
            self.stats.by_code[e.code] = self.stats.by_code.get(e.code, 0) + 1
            log.warning("call %s: dropped a message: %s: %s", self.call_id, e.code, e.message)
        return False

    def _require_session(self) -> Session:
        if self.session is None:
            raise ProtocolError("media stream message before 'start'", code="not_configured")
        return self.session

    def _start(self, start: Started) -> None:
        if self.session is not None:
            raise ProtocolError("a second 'start' in one stream", code="already_configured")
        if start.encoding != "audio/x-mulaw" or start.sample_rate != PHONE_RATE or start.channels != 1:
            raise ProtocolError(
                f"unsupported media format {start.encoding} {start.sample_rate} Hz x{start.channels}",
                code="unsupported_sample_rate",
            )
        self.call_id, self.stream_id = start.call_id, start.stream_id
        self.output = PacedOutput(
            PHONE_RATE, self._send_frame, lead_s=self.settings.playout_lead_s, on_clear=self._clear
        )
        profile = start.parameters.get("profile") or self.settings.phone_profile
        self.session = Session(
            self.engines, self.settings, self.output, self._emit, session_id=self.call_id, profile=profile
        )
        self._tasks.append(asyncio.create_task(self.output.run(), name=f"{self.call_id}-playout"))
        self._tasks.append(
            asyncio.create_task(self._run_session(self.session), name=f"{self.call_id}-session")
        )
        greeting = start.parameters.get("greeting") or self.settings.phone_greeting
        if greeting:
            self.session.send_text(greeting, verbatim=True)
        log.info(
            "call %s: started (stream %s, profile %s, parameters %s)",
            self.call_id,
            self.stream_id,
            self.session.profile,
            sorted(start.parameters),
        )

    def _mark_played(self, name: str) -> None:
        turn, _, samples = name.partition(":")
        if not (turn.isdigit() and samples.isdigit()):
            raise ProtocolError(f"a mark this server did not send: {name!r}", code="bad_field")
        self.marks_played += 1
        # After a clear the provider echoes every pending mark at once, played or not: the position
        # can only move forward from what was reported before (Session keeps the latest report).
        if self.session is not None and int(turn) == self._turn:
            self.session.report_playback(int(turn), int(samples) / PHONE_RATE)

    async def _run_session(self, session: Session) -> None:
        try:
            await session.run()
        except* Exception:
            log.exception("call %s: the session failed", self.call_id)
            self._outbound.put_nowait(None)

    # -- outbound ---------------------------------------------------------------------------------
    def _send_frame(self, frame: bytes) -> None:
        pcm = np.frombuffer(frame, dtype="<i2").astype(np.int16)
        self._outbound.put_nowait(self.serializer.media(self.stream_id, mulaw_encode(pcm)))
        self._turn_samples += len(pcm)
        if self._turn_samples - self._marked_samples >= MARK_EVERY_S * PHONE_RATE:
            self._mark()

    def _mark(self) -> None:
        if self._turn is not None and self._turn_samples > self._marked_samples:
            self._outbound.put_nowait(
                self.serializer.mark(self.stream_id, f"{self._turn}:{self._turn_samples}")
            )
            self._marked_samples = self._turn_samples
            self.marks_sent += 1

    def _clear(self) -> None:
        self._outbound.put_nowait(self.serializer.clear(self.stream_id))
        self._turn = None

    def _emit(self, event: Event) -> None:
        """Media streams carry no events: the call's side of the conversation goes to the log."""
        match event:
            case ResponseAudioStarted(turn_id=tid):
                self._turn, self._turn_samples, self._marked_samples = tid, 0, 0
            case ResponseAudioDone():
                self._mark()
            case TranscriptFinal(turn_id=tid, text=text):
                log.info("call %s: turn %d: caller: %s", self.call_id, tid, text)
            case ResponseDone(turn_id=tid, text=text, interrupted=interrupted):
                cut = " (interrupted; the caller heard this much)" if interrupted else ""
                log.info("call %s: turn %d: agent%s: %s", self.call_id, tid, cut, text)
            case DtmfReceived(digit=digit):
                log.info("call %s: DTMF %s", self.call_id, digit)
            case Error(code=code, message=message):
                log.warning("call %s: %s: %s", self.call_id, code, message)
            case _:
                pass

    async def _writer(self) -> None:
        while (item := await self._outbound.get()) is not None:
            await self.ws.send(item)
        await self.ws.close(1011, "call failed")
