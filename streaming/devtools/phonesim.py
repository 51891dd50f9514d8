"""A phone call as Twilio's Media Streams would make it: the call simulator of the tests and the bench.

It speaks the real message sequence (``connected``, ``start`` with a callSid, streamSid, mediaFormat
and customParameters, ``media`` every 20 ms in real time with base64 mu-law 8 kHz payloads and
increasing sequenceNumber/chunk/timestamp, ``dtmf``, ``stop``), and plays what it receives the way
Twilio does: ``media`` is buffered and played in real time, a ``mark`` is echoed once the audio before
it has played, and ``clear`` drops the buffer and echoes every pending mark at once.
A handset without echo cancellation can be simulated: what the call plays comes back into what it
sends (``echo_gain`` after ``echo_delay_s``, through a short decaying tail), over line noise.
Formats: https://www.twilio.com/docs/voice/media-streams/websocket-messages
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from agent.audio import AUDIO_PTIME_S, Pcm, peak_dbfs
from streaming.codecs import mulaw_decode, mulaw_encode, resample
from streaming.devtools.client import TurnResult

PHONE_RATE = 8000
FRAME = 160  # 20 ms


@dataclass
class PhoneCall:
    url: str  # ws://host:port/twilio/media
    parameters: dict[str, str] = field(default_factory=dict)
    call_sid: str = field(default_factory=lambda: "CA" + uuid.uuid4().hex)
    stream_sid: str = field(default_factory=lambda: "MZ" + uuid.uuid4().hex)
    ws: ClientConnection | None = None
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (arrival, message)
    marks_echoed: list[str] = field(default_factory=list)
    _seq: int = 0
    _chunk: int = 0
    _reader: asyncio.Task[None] | None = None
    _player: asyncio.Task[None] | None = None
    # (samples, "", audio) for media, (0, name, None) for a mark
    _buffer: list[tuple[int, str, Pcm | None]] = field(default_factory=list)
    _new: asyncio.Event = field(default_factory=asyncio.Event)
    _line_next: float | None = None  # when the next 20 ms media frame is due
    # A handset's echo: what was played comes back this much quieter, this much later; line noise.
    echo_gain: float = 0.0
    echo_delay_s: float = 0.1
    noise_dbfs: float | None = None  # e.g. -60: white noise under everything sent
    _played: list[tuple[float, Pcm]] = field(default_factory=list)  # (when it began to play, audio)
    _rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(3))

    async def __aenter__(self) -> PhoneCall:
        self.ws = await connect(self.url, max_size=None, compression=None)
        self._reader = asyncio.create_task(self._read())
        self._player = asyncio.create_task(self._play())
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send(
            {
                "event": "start",
                "start": {
                    "accountSid": "AC" + "0" * 32,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": self.parameters,
                },
                "streamSid": self.stream_sid,
            }
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self._send(
                {"event": "stop", "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid}}
            )
        tasks = [t for t in (self._reader, self._player) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self.ws is not None:
            await self.ws.close()

    async def _send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None  # noqa: S101 - inside the context manager
        if message["event"] != "connected":  # every message but connected counts, from "1"
            self._seq += 1
            message = {**message, "sequenceNumber": str(self._seq)}
        if message["event"] not in ("connected", "start"):
            message.setdefault("streamSid", self.stream_sid)
        await self.ws.send(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        """Anything at all, for the bad-input tests."""
        assert self.ws is not None  # noqa: S101 - inside the context manager
        await self.ws.send(text)

    async def dtmf(self, digit: str) -> None:
        await self._send({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": digit}})

    async def say(self, pcm8k: Pcm) -> float:
        """Send ``pcm8k`` as real-time 20 ms media messages; return when its last frame was sent."""
        now = time.monotonic()
        # One clock across calls: a phone line does not pause between two ``say``s.
        t0 = self._line_next if self._line_next is not None and now - self._line_next < 0.1 else now
        sent_at = t0
        for i in range(0, len(pcm8k), FRAME):
            delay = t0 + (i // FRAME) * AUDIO_PTIME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._line_next = t0 + (i // FRAME + 1) * AUDIO_PTIME_S
            frame = pcm8k[i : i + FRAME]
            if len(frame) < FRAME:
                frame = np.concatenate([frame, np.zeros(FRAME - len(frame), np.int16)])
            frame = self._line(frame, time.monotonic())
            self._chunk += 1
            payload = base64.b64encode(mulaw_encode(frame)).decode()
            media = {
                "track": "inbound",
                "chunk": str(self._chunk),
                "timestamp": str(self._chunk * 20),
                "payload": payload,
            }
            await self._send({"event": "media", "media": media})
            sent_at = time.monotonic()
        return sent_at

    def _line(self, frame: Pcm, now: float) -> Pcm:
        """The microphone's ``frame`` (ending now) as the line carries it: plus the echo of what was
        playing ``echo_delay_s`` ago (with a ~20 ms decaying tail) and the line noise."""
        if self.echo_gain <= 0 and self.noise_dbfs is None:
            return frame
        mixed = frame.astype(np.float64)
        if self.echo_gain > 0:
            start = now - self.echo_delay_s - len(frame) / PHONE_RATE
            echo = self._played_between(start - 0.03, start + len(frame) / PHONE_RATE)
            tail = np.exp(-np.arange(int(0.03 * PHONE_RATE)) / (0.006 * PHONE_RATE))
            tail /= np.sqrt(np.sum(tail**2))
            mixed += np.convolve(echo, tail)[len(tail) - 1 : len(tail) - 1 + len(frame)] * self.echo_gain
        if self.noise_dbfs is not None:
            mixed += self._rng.standard_normal(len(frame)) * 32768 * 10 ** (self.noise_dbfs / 20)
        return np.clip(mixed, -32768, 32767).astype(np.int16)

    def _played_between(self, t0: float, t1: float) -> np.ndarray:
        """What the handset's speaker played between t0 and t1, as samples (silence where nothing)."""
        n = round((t1 - t0) * PHONE_RATE)
        out = np.zeros(n, np.float64)
        for began, pcm in reversed(self._played):
            if began + len(pcm) / PHONE_RATE < t0:
                break
            offset = round((began - t0) * PHONE_RATE)
            lo, hi = max(0, offset), min(n, offset + len(pcm))
            if hi > lo:
                out[lo:hi] += pcm[lo - offset : hi - offset]
        return out

    async def silence_until(self, done: Any, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"still waiting after {timeout_s} s")
            await self.say(np.zeros(FRAME * 5, np.int16))

    # -- what came back -------------------------------------------------------------------------
    def messages(self, event: str, since: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.received if m.get("event") == event and t >= since]

    def audio(self, since: float = 0.0, until: float = float("inf")) -> list[tuple[float, Pcm]]:
        return [
            (t, mulaw_decode(base64.b64decode(m["media"]["payload"])))
            for t, m in self.messages("media", since)
            if t < until
        ]

    def first_audible(self, since: float) -> float | None:
        return next((t for t, pcm in self.audio(since) if peak_dbfs(pcm) > -40.0), None)

    async def _read(self) -> None:
        assert self.ws is not None  # noqa: S101 - started by __aenter__
        async for raw in self.ws:
            message = json.loads(raw)
            self.received.append((time.monotonic(), message))
            match message.get("event"):
                case "media":
                    pcm = mulaw_decode(base64.b64decode(message["media"]["payload"]))
                    self._buffer.append((len(pcm), "", pcm if self.echo_gain > 0 else None))
                case "mark":
                    self._buffer.append((0, message["mark"]["name"], None))
                case "clear":  # drop what is buffered; every pending mark comes back at once
                    pending = [name for _, name, _ in self._buffer if name]
                    self._buffer.clear()
                    for name in pending:
                        await self._echo_mark(name)
            self._new.set()

    async def _play(self) -> None:
        """Play the buffer in real time, 20 ms at a time; echo each mark when it is reached."""
        while True:
            while self._buffer and self._buffer[0][1]:
                await self._echo_mark(self._buffer.pop(0)[1])
            if self._buffer:
                n, _, pcm = self._buffer.pop(0)
                if pcm is not None:
                    self._played.append((time.monotonic(), pcm))
                    del self._played[:-200]  # the last ~4 s is all an echo can reach
                await asyncio.sleep(n / PHONE_RATE)
            else:
                self._new.clear()
                await self._new.wait()

    async def _echo_mark(self, name: str) -> None:
        self.marks_echoed.append(name)
        await self._send({"event": "mark", "mark": {"name": name}})


class PhoneBenchClient:
    """``voxloop bench --transport twilio``: the bench's client interface over a simulated call.
    Media streams carry no transcripts or metrics: a turn is over when its audio stops coming."""

    def __init__(self, call: PhoneCall, rate: int) -> None:
        self.call = call
        self.rate = rate

    async def stream(self, pcm: Pcm) -> float:
        return await self.call.say(resample(pcm, self.rate, PHONE_RATE))

    async def turn(self, speech: Pcm, *, timeout_s: float = 30.0) -> TurnResult:
        call = self.call
        mark = len(call.received)
        started = time.monotonic()
        last = await self.stream(speech)

        def reply_over() -> bool:
            media = [t for t, m in call.received[mark:] if m.get("event") == "media"]
            return bool(media) and time.monotonic() - media[-1] > 0.6 and call.first_audible(last) is not None

        with contextlib.suppress(TimeoutError):
            await call.silence_until(reply_over, timeout_s)
        first = call.first_audible(last)
        early = any(peak_dbfs(pcm) > -40.0 for _, pcm in call.audio(started, last))
        chunks = [pcm for t, pcm in call.audio(last)]
        return TurnResult(
            turn_id=0,
            transcript="",
            reply_text="",
            interrupted=False,
            v2v_s=None if first is None else first - last,
            premature=early,
            audio=np.concatenate(chunks) if chunks else np.zeros(0, np.int16),
            frame_samples=[len(c) for c in chunks],
            metrics={},
            events=[{"type": m["event"], **m} for _, m in call.received[mark:] if m.get("event") != "media"],
        )
