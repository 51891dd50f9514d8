"""A WebSocket voice client that behaves like a user's: real-time 20 ms frames, silence after speech.

It measures voice-to-voice latency as docs/latency (../shared/LATENCY.md) defines it, on its own clock:
from the moment it sends the frame holding the utterance's last speech sample to the moment it receives
the first agent audio frame with a sample above -40 dBFS. Used by the integration tests and the bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from agent.audio import AUDIO_PTIME_S, Pcm, peak_dbfs
from streaming.codecs import StreamResampler, pcm_to_bytes, resample

AUDIBLE_DBFS = -40.0
STALL_S = 0.03  # a gap in a reply's audio this long is heard as a stall (a 20 ms frame late is not)


@dataclass
class TurnResult:
    turn_id: int
    transcript: str
    reply_text: str
    interrupted: bool
    v2v_s: float | None  # None: no audible agent audio arrived
    premature: bool  # agent audio arrived before the user's last speech sample was sent
    audio: Pcm
    frame_samples: list[int]  # samples in each binary message received
    metrics: dict[str, Any]
    events: list[dict[str, Any]]
    stalls_s: list[float] = field(default_factory=list)  # playback ran dry this long, after the first audio


def playback_stalls(arrivals: list[tuple[float, float]], min_s: float = STALL_S) -> list[float]:
    """Where a listener's playback would have run dry: ``arrivals`` are (arrival time, seconds of
    audio) of each chunk in order; a chunk that arrives after everything before it has played
    leaves a gap (a stall) of that long. Gaps shorter than ``min_s`` are not counted."""
    stalls: list[float] = []
    played_until: float | None = None
    for at, seconds in arrivals:
        if played_until is not None and at - played_until >= min_s:
            stalls.append(at - played_until)
        played_until = max(at, played_until if played_until is not None else at) + seconds
    return stalls


@dataclass
class _Received:
    at: float
    message: dict[str, Any] | None = None
    pcm: Pcm | None = None


@dataclass
class VoiceClient:
    url: str
    input_rate: int = 16000
    output_rate: int = 24000
    system_prompt: str | None = None
    ws: ClientConnection | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    _inbox: list[_Received] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _new: asyncio.Event = field(default_factory=asyncio.Event)
    # A client without echo cancellation: what it plays comes back into its microphone.
    echo_gain: float = 0.0
    echo_delay_s: float = 0.1
    echo_tail_s: float = 0.0  # a room's decaying tail after the direct echo (0: a single copy)
    _playback: list[Pcm] = field(default_factory=list)  # received audio, on the playback timeline
    _play_start: float = 0.0
    _played: int = 0  # samples in _playback
    # Playback position reports (``playback.position``): this client plays audio as it arrives, so
    # its position in a turn is the audio received for it. Sent with the microphone's frames.
    report_playback: bool = True
    report_interval_s: float = 0.2
    _audio_turn: int | None = None
    _turn_samples: int = 0
    _reported_samples: int = 0
    _reports: list[dict[str, Any]] = field(default_factory=list)
    reports_sent: int = 0
    # "websocket": PCM in binary frames; "webrtc": Opus over an aiortc peer signalled on the WebSocket.
    audio: str = "websocket"
    rtc_jitter_frames: int = 1  # this client's inbound jitter buffer (webrtc), in 20 ms frames
    _rtc: Any = None  # the client's RTCPeerConnection (webrtc)
    _mic: Any = None  # its outbound track (webrtc)
    _rtc_reader: asyncio.Task[None] | None = None
    _mic_next: float | None = None  # when the next microphone frame is due (one clock across calls)

    async def __aenter__(self) -> VoiceClient:
        self.ws = await connect(self.url, max_size=None, compression=None)
        self._reader = asyncio.create_task(self._read())
        update: dict[str, Any] = {
            "type": "session.update",
            "input_sample_rate": self.input_rate,
            "output_sample_rate": self.output_rate,
        }
        if self.system_prompt:
            update["system_prompt"] = self.system_prompt
        if self.audio == "webrtc":
            update["audio"] = "webrtc"
        await self.send_json(update)
        self.ready = await self.wait_for("session.ready", timeout_s=10)
        if self.audio == "webrtc":
            await self._connect_rtc()
        return self

    async def _connect_rtc(self) -> None:
        """Offer a peer (complete SDP, no trickle) on the session's WebSocket; take the answer."""
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from streaming.rtc import (
            OutboundTrack,
            offer_loopback_candidates,
            rtc_configuration,
            set_jitter_buffer,
        )

        offer_loopback_candidates(True)  # the server is on this host
        from agent.config import Settings

        self._rtc = RTCPeerConnection(rtc_configuration(Settings()))
        self._mic = OutboundTrack()
        self._rtc.addTrack(self._mic)

        def on_track(track: Any) -> None:
            self._rtc_reader = asyncio.create_task(self._read_rtc(track))

        self._rtc.on("track", on_track)
        for transceiver in self._rtc.getTransceivers():  # aiortc waits for 4 frames; a browser adapts
            set_jitter_buffer(transceiver.receiver, self.rtc_jitter_frames)
        # Over WebRTC the agent's audio is one continuous stream (silence between replies): this
        # client cannot tell where a turn's audio starts in it, so it reports no playback position.
        self.report_playback = False

        await self._rtc.setLocalDescription(await self._rtc.createOffer())
        mark = len(self._inbox)
        await self.send_json({"type": "webrtc.offer", "sdp": self._rtc.localDescription.sdp})
        answer = await self.wait_for("webrtc.answer", timeout_s=10, since=mark)
        await self._rtc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def _read_rtc(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        from streaming.rtc import to_mono_pcm

        resampler: StreamResampler | None = None
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                pcm, rate = to_mono_pcm(frame)
                if resampler is None:
                    resampler = StreamResampler(rate, self.output_rate)
                self._on_binary(resampler.process(pcm), time.monotonic())

    async def __aexit__(self, *exc: object) -> None:
        tasks = [t for t in (self._reader, self._rtc_reader) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._rtc is not None:
            await self._rtc.close()
        if self.ws is not None:
            await self.ws.close()

    async def send_json(self, message: dict[str, Any]) -> None:
        assert self.ws is not None  # noqa: S101 - used inside the context manager
        await self.ws.send(json.dumps(message))

    async def send_bytes(self, data: bytes) -> None:
        """Microphone PCM at ``input_rate``: a binary frame, or into the WebRTC track."""
        if self._mic is not None:
            self._mic.push_pcm(np.frombuffer(data, dtype="<i2").astype(np.int16), self.input_rate)
            return
        assert self.ws is not None  # noqa: S101 - used inside the context manager
        await self.ws.send(data)

    async def _read(self) -> None:
        assert self.ws is not None  # noqa: S101 - started by __aenter__
        async for message in self.ws:
            now = time.monotonic()
            if isinstance(message, bytes):
                self._on_binary(np.frombuffer(message, dtype="<i2").astype(np.int16), now)
                continue
            event = json.loads(message)
            self._inbox.append(_Received(now, message=event))
            if event["type"] == "response.audio.started":
                self._audio_turn, self._turn_samples, self._reported_samples = event["turn_id"], 0, 0
            elif event["type"] == "audio.clear":
                self._playback, self._played = [], 0  # a real client drops its buffer
                self._report()  # and says where it stopped
                self._audio_turn = None
            self._new.set()

    def _on_binary(self, pcm: Pcm, now: float) -> None:
        self._inbox.append(_Received(now, pcm=pcm))
        self._play(pcm, now)
        self._turn_samples += len(pcm)
        if self._turn_samples - self._reported_samples >= self.report_interval_s * self.output_rate:
            self._report()
        self._new.set()

    def _report(self) -> None:
        if self.report_playback and self._audio_turn is not None:
            played_s = round(self._turn_samples / self.output_rate, 3)
            self._reports.append(
                {"type": "playback.position", "turn_id": self._audio_turn, "played_s": played_s}
            )
            self._reported_samples = self._turn_samples

    async def _send_reports(self) -> None:
        while self._reports:
            await self.send_json(self._reports.pop(0))
            self.reports_sent += 1

    def _play(self, pcm: Pcm, now: float) -> None:
        """Queue received audio on the playback timeline (a new run starts when the last one ended)."""
        if now > self._play_start + self._played / self.output_rate + 0.1:
            self._playback, self._played, self._play_start = [], 0, now
        self._playback.append(pcm)
        self._played += len(pcm)

    def _with_echo(self, frame: Pcm, now: float) -> Pcm:
        """``frame`` (the microphone, ending now) plus the echo of what was playing echo_delay_s ago."""
        if self.echo_gain <= 0 or not self._playback:
            return frame
        n_out = round(len(frame) * self.output_rate / self.input_rate)
        n_tail = int(self.echo_tail_s * self.output_rate)
        end = int((now - self.echo_delay_s - self._play_start) * self.output_rate)
        start = end - n_out - n_tail
        if end <= 0 or start >= self._played:
            return frame
        played = np.concatenate(self._playback)
        segment = np.zeros(end - start, np.float64)
        lo, hi = max(start, 0), min(end, self._played)
        segment[lo - start : hi - start] = played[lo:hi]
        if n_tail:  # direct sound plus an exponentially decaying tail (energy-normalised)
            ir = np.exp(-np.arange(n_tail) / (n_tail / 5.0))
            ir[1:] *= 0.5 * np.random.default_rng(0).standard_normal(n_tail - 1)  # one room
            ir /= np.sqrt(np.sum(ir**2))
            segment = np.convolve(segment, ir)[n_tail : n_tail + n_out]
        segment_i16 = np.clip(segment, -32768, 32767).astype(np.int16)
        echo = resample(segment_i16, self.output_rate, self.input_rate)[: len(frame)].astype(np.float64)
        mixed = frame.astype(np.float64)
        mixed[: len(echo)] += echo * self.echo_gain
        return np.clip(mixed, -32768, 32767).astype(np.int16)

    @property
    def mark(self) -> int:
        """Where the inbox ends now: pass it as ``since`` to read only what comes after."""
        return len(self._inbox)

    def received_audio(self, since: int = 0) -> Pcm:
        """The agent's audio received at or after inbox index ``since``, joined."""
        parts = [r.pcm for r in self._inbox[since:] if r.pcm is not None]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def messages(self, kind: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        return [
            r.message
            for r in self._inbox[since:]
            if r.message is not None and (kind is None or r.message["type"] == kind)
        ]

    def first(self, kind: str, since: int = 0, **match: Any) -> dict[str, Any] | None:
        """The first message of ``kind`` (with the given field values) at or after inbox index ``since``."""
        return next(
            (m for m in self.messages(kind, since) if all(m.get(k) == v for k, v in match.items())), None
        )

    async def wait_for(self, kind: str, *, timeout_s: float, since: int = 0, **match: Any) -> dict[str, Any]:
        """Wait for ``first(kind, since, **match)``."""
        deadline = time.monotonic() + timeout_s
        while (found := self.first(kind, since, **match)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind} {match or ''} within {timeout_s} s")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)
        return found

    async def hold_silence(self, done: Callable[[], bool], *, timeout_s: float = 30.0) -> None:
        """Keep the microphone open: real-time 20 ms frames of silence until ``done()``.
        (Calling ``stream`` with one frame at a time in a loop would not be real time: each call
        starts its own clock. This keeps one clock.)"""
        frame = np.zeros(round(self.input_rate * AUDIO_PTIME_S), np.int16)
        t0 = self._mic_clock()
        i = 0
        while not done():
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"still waiting after {timeout_s} s")
            delay = t0 + i * AUDIO_PTIME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            i += 1
            self._mic_next = t0 + i * AUDIO_PTIME_S
            await self.send_bytes(pcm_to_bytes(self._with_echo(frame, time.monotonic())))
            await self._send_reports()

    def _mic_clock(self) -> float:
        """When the next microphone frame is due: right after the last one if it was sent lately
        (a microphone does not stop between two calls of ``stream``; a gap in the input would move
        every echo earlier on the server's input timeline), else now."""
        now = time.monotonic()
        if self._mic_next is not None and now - self._mic_next < 0.1:
            return self._mic_next
        return now

    async def stream(self, pcm: Pcm, *, start_at: float | None = None) -> float:
        """Send ``pcm`` in real-time 20 ms frames (one clock for this call); return the send time of
        the last frame."""
        frame = round(self.input_rate * AUDIO_PTIME_S)
        t0 = self._mic_clock() if start_at is None else start_at
        sent_at = t0
        for i in range(0, len(pcm), frame):
            delay = t0 + (i // frame) * AUDIO_PTIME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._mic_next = t0 + (i // frame + 1) * AUDIO_PTIME_S
            await self.send_bytes(pcm_to_bytes(self._with_echo(pcm[i : i + frame], time.monotonic())))
            sent_at = time.monotonic()
            await self._send_reports()
        return sent_at

    async def turn(self, speech: Pcm, *, timeout_s: float = 30.0, max_silence_s: float = 20.0) -> TurnResult:
        """Say ``speech`` (its last sample is the last speech sample), then stream silence as a real
        client does, until the agent's reply is done. Measures v2v latency on this client's clock."""
        mark = len(self._inbox)
        last_speech_at = await self.stream(speech)
        started = time.monotonic()

        def replied() -> bool:
            return self.first("response.done", mark) is not None

        with contextlib.suppress(TimeoutError):  # after max_silence_s: stop sending, keep waiting
            await self.hold_silence(replied, timeout_s=min(max_silence_s, timeout_s))
        remaining = timeout_s - (time.monotonic() - started)
        done = await self.wait_for("response.done", timeout_s=max(remaining, 0.0), since=mark)
        tid = done["turn_id"]
        with contextlib.suppress(TimeoutError):
            await self.wait_for("turn.metrics", timeout_s=2.0, since=mark, turn_id=tid)
        return self._result(mark, tid, last_speech_at, done)

    def _result(self, mark: int, tid: int, last_speech_at: float, done: dict[str, Any]) -> TurnResult:
        received = self._inbox[mark:]
        audio = [r for r in received if r.pcm is not None]
        chunks = [r.pcm for r in audio if r.pcm is not None]
        first_audible = next((r.at for r in audio if peak_dbfs(r.pcm) > AUDIBLE_DBFS), None)  # type: ignore[arg-type]
        playing = [(r.at, len(r.pcm) / self.output_rate) for r in audio if r.pcm is not None]
        if first_audible is not None:
            playing = [p for p in playing if p[0] >= first_audible]
        finals = [m["text"] for m in self.messages("transcript.final", mark) if m["turn_id"] == tid]
        metrics = next((m for m in self.messages("turn.metrics", mark) if m["turn_id"] == tid), {})
        return TurnResult(
            turn_id=tid,
            transcript=" ".join(finals),
            reply_text=done.get("text", ""),
            interrupted=bool(done.get("interrupted")),
            v2v_s=None if first_audible is None else first_audible - last_speech_at,
            premature=first_audible is not None and first_audible < last_speech_at,
            audio=np.concatenate(chunks) if chunks else np.zeros(0, np.int16),
            frame_samples=[len(c) for c in chunks],
            metrics=metrics,
            events=[r.message for r in received if r.message is not None],
            stalls_s=playback_stalls(playing) if first_audible is not None else [],
        )
