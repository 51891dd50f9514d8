"""A bench client over the OpenAI Realtime API (``voxloop bench --transport realtime``): the corpus is
streamed as ``input_audio_buffer.append`` events of 20 ms in real time, 24 kHz PCM in base64, and the
reply's ``response.output_audio.delta`` events are timed as they arrive, on this client's clock, as
for every other transport (../shared/LATENCY.md). The Realtime API carries no turn.metrics, so a turn
here has the client's figures only. Plain ``websockets``, not the openai SDK: the SDK would add its
own parsing to every timed delta (and is only a dev dependency).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from agent.audio import AUDIO_PTIME_S, Pcm, peak_dbfs
from streaming.codecs import resample
from streaming.devtools.client import TurnResult, playback_stalls

RATE = 24000
AUDIBLE_DBFS = -40.0


@dataclass
class RealtimeBenchClient:
    url: str  # ws://host:port/v1/realtime?model=...
    input_rate: int = 16000  # what the bench's corpus is rendered at
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    ws: ClientConnection | None = None
    _reader: asyncio.Task[None] | None = None
    _new: asyncio.Event = field(default_factory=asyncio.Event)
    _mic_next: float | None = None

    async def __aenter__(self) -> RealtimeBenchClient:
        self.ws = await connect(self.url, max_size=None, compression=None)
        self._reader = asyncio.create_task(self._read())
        await self._wait(lambda: self._first("session.created", 0) is not None, 10.0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:  # as VoiceClient: cancelled and awaited, its cancellation not swallowed
            self._reader.cancel()
            await asyncio.wait([self._reader])
        if self.ws is not None:
            await self.ws.close()

    async def _read(self) -> None:
        assert self.ws is not None  # noqa: S101 - set before the reader starts
        async for message in self.ws:
            self.received.append((time.monotonic(), json.loads(message)))
            self._new.set()

    def _first(self, kind: str, since: int) -> dict[str, Any] | None:
        return next((e for _, e in self.received[since:] if e.get("type") == kind), None)

    async def _wait(self, done: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"still waiting after {timeout_s} s")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)

    async def _send_frames(self, pcm: Pcm, until: Any = None, timeout_s: float = 30.0) -> float:
        """Real-time 20 ms appends of ``pcm`` (24 kHz), or of silence while ``until()`` is false;
        one clock, continuing the last call's when it ended lately. Returns the last send time."""
        assert self.ws is not None  # noqa: S101 - inside the context
        frame = round(RATE * AUDIO_PTIME_S)
        now = time.monotonic()
        t0 = self._mic_next if self._mic_next is not None and now - self._mic_next < 0.1 else now
        sent_at, i = t0, 0
        silence = np.zeros(frame, np.int16)
        while (i * frame < len(pcm)) if until is None else not until():
            if until is not None and time.monotonic() - t0 > timeout_s:
                break
            delay = t0 + i * AUDIO_PTIME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = pcm[i * frame : (i + 1) * frame] if until is None else silence
            event = {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(chunk.astype("<i2").tobytes()).decode(),
            }
            await self.ws.send(json.dumps(event))
            sent_at = time.monotonic()
            i += 1
            self._mic_next = t0 + i * AUDIO_PTIME_S
        return sent_at

    async def stream(self, pcm: Pcm) -> float:
        return await self._send_frames(resample(pcm, self.input_rate, RATE))

    async def turn(self, speech: Pcm, *, timeout_s: float = 30.0) -> TurnResult:
        mark = len(self.received)
        last = await self.stream(speech)
        await self._send_frames(
            np.zeros(0, np.int16), lambda: self._first("response.done", mark) is not None, timeout_s
        )
        events = self.received[mark:]
        audio = [(at, _pcm(e)) for at, e in events if e.get("type") == "response.output_audio.delta"]
        first = next((at for at, pcm in audio if peak_dbfs(pcm) > AUDIBLE_DBFS), None)
        done = self._first("response.done", mark) or {}
        transcript = self._first("conversation.item.input_audio_transcription.completed", mark) or {}
        said = self._first("response.output_audio_transcript.done", mark) or {}
        playing = [(at, len(pcm) / RATE) for at, pcm in audio if first is not None and at >= first]
        chunks = [pcm for _, pcm in audio]
        return TurnResult(
            turn_id=0,
            transcript=transcript.get("transcript", ""),
            reply_text=said.get("transcript", ""),
            interrupted=done.get("response", {}).get("status") == "cancelled",
            v2v_s=None if first is None else first - last,
            premature=first is not None and first < last,
            audio=np.concatenate(chunks) if chunks else np.zeros(0, np.int16),
            frame_samples=[len(c) for c in chunks],
            metrics={},
            events=[e for _, e in events if e.get("type") != "response.output_audio.delta"],
            stalls_s=playback_stalls(playing),
        )


def _pcm(event: dict[str, Any]) -> Pcm:
    return np.frombuffer(base64.b64decode(event["delta"]), "<i2").astype(np.int16)
