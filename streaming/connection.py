"""One client connection, whatever its wire protocol: reader, ordered writer, audio paths, shutdown.

A ``Connection`` reads wire messages from a ``WireSocket``, lets its ``Codec`` (streaming/protocols/)
turn each into what it means (session inputs, an audio format to open, a reply on the wire, a WebRTC
offer, a hang-up), and feeds the session; the session's events and paced audio frames go back through
the same codec into one ordered ``Writer``, so an ``audio.clear`` can never overtake audio of its own
turn or be overtaken. Audio travels over the socket itself (WebSocket PCM, a phone provider's media
messages) or over WebRTC (``streaming/rtc.py``), chosen when the codec opens the audio path.

Every task a connection starts belongs to its TaskGroup; when the client goes (or hangs up) they are
cancelled and awaited, the WebRTC peer is closed, and the process counters are updated: a connection
that ends, however it ends, leaves nothing running.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from agent.audio import INPUT_RATE, Pcm
from agent.config import Settings
from agent.engines import Engines
from agent.errors import VoxloopError
from agent.events import AudioClear, AudioFrame, AudioIn, Error, Event, Input, Output
from agent.session import Session
from streaming.codecs import StreamResampler, pcm_to_bytes
from streaming.playout import PacedOutput
from streaming.rtc import RTC_RATE, RtcPeer

log = logging.getLogger(__name__)

Wire = str | bytes
AudioPath = Literal["websocket", "webrtc", "phone"]


# -- what a codec says a wire message means -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OpenAudio:
    """Start the session: audio at ``input_rate`` in and ``output_rate`` out, over ``path``."""

    input_rate: int
    output_rate: int
    path: AudioPath
    session_id: str | None = None  # a provider's id for the session (a call id), else one is made


@dataclass(frozen=True, slots=True, eq=False)
class WireAudio:
    """User audio as the wire carried it (int16 at the opened input rate): resampled here."""

    pcm: Pcm


@dataclass(frozen=True, slots=True)
class Reply:
    """A message straight back to the client (a pong): not the session's business."""

    message: Wire


@dataclass(frozen=True, slots=True)
class RtcOffer:
    sdp: str


@dataclass(frozen=True, slots=True)
class RtcAnswer:
    sdp: str


@dataclass(frozen=True, slots=True)
class HangUp:
    """The client says the stream is over."""


Meaning = Input | OpenAudio | WireAudio | Reply | RtcOffer | HangUp


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A wire message for the writer; ``audio`` marks real-time audio, which may be dropped when the
    client falls behind or the agent is interrupted (everything else is always sent, in order)."""

    message: Wire
    audio: bool = False


class Codec(Protocol):
    """One wire protocol, pure: no I/O, no clock. ``decode`` raises VoxloopError for a message it
    cannot accept (the connection reports it through ``encode(Error)`` and goes on)."""

    name: str

    def opening(self) -> list[Meaning]:
        """What the connection means as soon as it opens, before any message (a protocol whose
        server speaks first: the Realtime API's ``session.created``)."""
        ...

    def decode(self, message: Wire) -> list[Meaning]: ...

    def encode(self, output: Output | RtcAnswer) -> list[Outgoing]: ...

    def ended(self, hung_up: bool) -> None:
        """The connection is over (for the codec's log line)."""
        ...


class WireSocket(Protocol):
    """What a connection needs of a WebSocket (server.py adapts Starlette's)."""

    async def receive(self) -> Wire | None:
        """The next message; None once the client has gone."""
        ...

    async def send(self, message: Wire) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


# -- counters ---------------------------------------------------------------------------------------
@dataclass
class Stats:
    """Process-wide counters for /healthz and /metrics."""

    sessions_active: int = 0
    sessions_total: int = 0
    turns_answered: int = 0
    errors_sent: int = 0
    input_frames_dropped: int = 0
    output_frames_dropped: int = 0
    by_code: dict[str, int] = field(default_factory=dict)

    def error(self, code: str) -> None:
        self.errors_sent += 1
        self.by_code[code] = self.by_code.get(code, 0) + 1


# -- the writer -------------------------------------------------------------------------------------
class Writer:
    """Outbound messages in order, with water marks on the bytes queued.

    Real-time audio must not lag: when more than ``high_water_bytes`` are queued (a client that does
    not read fast enough), audio messages are dropped (oldest first, counted) until the queue is under
    ``low_water_bytes``; control messages are never dropped, and a client that lets even those pile
    up past ``8 x high_water_bytes`` is closed (1008). ``clear_audio()`` drops every queued audio
    message (barge-in). ``put`` never blocks; ``run`` sends until ``close``."""

    def __init__(self, socket: WireSocket, *, high_water_bytes: int, low_water_bytes: int) -> None:
        if not 0 <= low_water_bytes <= high_water_bytes:
            raise ValueError("need 0 <= low_water_bytes <= high_water_bytes")
        self._socket = socket
        self._queue: deque[Outgoing | _Close] = deque()
        self._queued_bytes = 0
        self._high, self._low = high_water_bytes, low_water_bytes
        self._ready = asyncio.Event()
        self._closing = False
        self.dropped_audio = 0
        self.overflowed = False
        self.messages_out = 0
        self.bytes_out = 0

    def put(self, out: Outgoing) -> None:
        if self._closing:
            return
        self._queue.append(out)
        self._queued_bytes += len(out.message)
        if self._queued_bytes > self._high:
            self._shed(self._low)
            if self._queued_bytes > 8 * self._high:  # not reading at all: nothing more is owed
                self.overflowed = True
                self._queue.clear()
                self._queued_bytes = 0
                self.close(1008, "client not reading")
        self._ready.set()

    def clear_audio(self) -> None:
        self._shed(0)

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then close the socket with ``code``."""
        if not self._closing:
            self._closing = True
            self._queue.append(_Close(code, reason))
            self._ready.set()

    def _shed(self, target_bytes: int) -> None:
        kept: deque[Outgoing | _Close] = deque()
        for item in self._queue:
            if isinstance(item, Outgoing) and item.audio and self._queued_bytes > target_bytes:
                self._queued_bytes -= len(item.message)
                self.dropped_audio += 1
            else:
                kept.append(item)
        self._queue = kept

    async def run(self) -> None:
        """Send until closed (or the socket fails: the reader then sees the client gone).
        Cancelling it drops what is still queued."""
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            item = self._queue.popleft()
            if isinstance(item, _Close):
                await self._socket.close(item.code, item.reason)
                return
            self._queued_bytes -= len(item.message)
            try:
                await self._socket.send(item.message)
            except (OSError, RuntimeError) as e:  # the client went away mid-send
                log.debug("send failed: %r", e)
                return
            self.messages_out += 1
            self.bytes_out += len(item.message)


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


# -- the connection ---------------------------------------------------------------------------------
class Connection:
    def __init__(
        self, socket: WireSocket, codec: Codec, engines: Engines, settings: Settings, stats: Stats
    ) -> None:
        self.socket = socket
        self.codec = codec
        self.engines = engines
        self.settings = settings
        self.stats = stats
        self.id = uuid.uuid4().hex[:12]
        self.writer = Writer(
            socket,
            high_water_bytes=settings.server.outbound_high_water_bytes,
            low_water_bytes=settings.server.outbound_high_water_bytes // 4,
        )
        self.session: Session | None = None
        self.peer: RtcPeer | None = None
        self._resampler: StreamResampler | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._owned: list[asyncio.Task[None]] = []
        self._turn_id = 0  # the newest turn the client was told of (for errors found here)
        self.messages_in = 0

    async def run(self) -> None:
        """Serve the connection until the client goes or hangs up; then stop everything it started
        and wait for it. Cancelling ``run`` does the same."""
        self.stats.sessions_active += 1
        self.stats.sessions_total += 1
        hung_up = False
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks = tg
                self._own(self.writer.run(), "writer")
                try:
                    for meaning in self.codec.opening():
                        self._take(meaning, time.monotonic())
                    hung_up = await self._read()
                finally:
                    for task in self._owned:
                        task.cancel()
        finally:
            self._tasks = None
            if self.peer is not None:
                await self.peer.close()
            self.stats.sessions_active -= 1
            self.stats.output_frames_dropped += self.writer.dropped_audio
            if self.session is not None:
                self.stats.turns_answered += self.session.turns_answered
                self.stats.input_frames_dropped += self.session.dropped_input_frames
            self.codec.ended(hung_up)
            log.info("%s %s: closed (%d in, %d out)", self.codec.name, self.id, self.messages_in,
                     self.writer.messages_out)  # fmt: skip

    def _own(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        assert self._tasks is not None  # noqa: S101 - only called inside run()
        self._owned.append(self._tasks.create_task(coro, name=f"{self.id}-{name}"))

    # -- inbound ----------------------------------------------------------------------------------
    async def _read(self) -> bool:
        """Read until the client goes (False) or hangs up (True)."""
        while (message := await self.socket.receive()) is not None:
            received_at = time.monotonic()
            self.messages_in += 1
            try:
                for meaning in self.codec.decode(message):
                    if isinstance(meaning, HangUp):
                        return True
                    self._take(meaning, received_at)
            except VoxloopError as e:
                self._report(e)
        return False

    def _take(self, meaning: Meaning, received_at: float) -> None:
        match meaning:
            case OpenAudio():
                self._open(meaning)
            case WireAudio(pcm=pcm):
                self._audio(pcm, received_at)
            case Reply(message=message):
                self.writer.put(Outgoing(message))
            case RtcOffer(sdp=sdp):
                if self.peer is not None:
                    self._own(self._answer(self.peer, sdp), "rtc-answer")
            case HangUp():
                pass
            case _:
                self._require_session().push(meaning)

    def _require_session(self) -> Session:
        if self.session is None:  # a codec lets no input through before it opened the audio path
            raise VoxloopError("the session is not open yet", code="not_configured")
        return self.session

    def _open(self, audio: OpenAudio) -> None:
        self.id = audio.session_id or self.id
        if audio.path == "webrtc":
            self.peer = RtcPeer(self.settings, self._rtc_audio, self.id)
            track = self.peer.track
            output = PacedOutput(
                RTC_RATE,
                lambda frame: track.push(pcm_to_bytes(frame.pcm)),
                lead_s=self.settings.webrtc.playout_lead_s,
                on_clear=track.clear,
            )
        else:
            output = PacedOutput(audio.output_rate, self._frame, lead_s=self.settings.audio.playout_lead_s)
        self._resampler = StreamResampler(audio.input_rate, INPUT_RATE)
        self.session = Session(self.engines, self.settings, output, self._event, session_id=self.id)
        self._own(output.run(), "playout")
        self._own(self._run_session(self.session), "session")
        log.info("%s %s: open (%s, %d Hz in, %d Hz out)", self.codec.name, self.id, audio.path,
                 audio.input_rate, audio.output_rate)  # fmt: skip

    def _audio(self, pcm: Pcm, received_at: float) -> None:
        session = self._require_session()
        assert self._resampler is not None  # noqa: S101 - set with the session
        session.push(AudioIn(self._resampler.process(pcm), received_at))

    def _rtc_audio(self, pcm: Pcm, sample_rate: int) -> None:
        if self.session is None:
            return
        if self._resampler is None or self._resampler.in_rate != sample_rate:
            self._resampler = StreamResampler(sample_rate, INPUT_RATE)
        self.session.push(AudioIn(self._resampler.process(pcm), time.monotonic()))

    async def _answer(self, peer: RtcPeer, sdp: str) -> None:
        try:
            answer = await peer.answer(sdp)
        except VoxloopError as e:
            self._report(e)
            return
        for out in self.codec.encode(RtcAnswer(answer)):
            self.writer.put(out)

    async def _run_session(self, session: Session) -> None:
        try:
            await session.run()
        except* VoxloopError as group:
            for e in group.exceptions:
                if isinstance(e, VoxloopError):
                    self._report(e)
        except* Exception:
            log.exception("%s %s: the session crashed", self.codec.name, self.id)
            self._event(Error(0, "internal_error", "the session failed; please reconnect", fatal=True))
            self.writer.close(1011, "session failed")

    # -- outbound ---------------------------------------------------------------------------------
    def _event(self, event: Event) -> None:
        self._turn_id = max(self._turn_id, event.turn_id)
        if isinstance(event, AudioClear):
            self.writer.clear_audio()  # queued audio of the cut reply never leaves
        if isinstance(event, Error):
            self.stats.error(event.code)
            log.info("%s %s: error %s: %s", self.codec.name, self.id, event.code, event.message)
        for out in self.codec.encode(event):
            self.writer.put(out)

    def _frame(self, frame: AudioFrame) -> None:
        for out in self.codec.encode(frame):
            self.writer.put(out)

    def _report(self, e: VoxloopError) -> None:
        self._event(Error(self._turn_id, e.code, e.message, e.fatal))
