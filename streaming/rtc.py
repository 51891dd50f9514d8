"""The WebRTC transport (aiortc): Opus both ways, signalled over the session's own WebSocket.

The browser sends ``webrtc.offer`` with a complete SDP (ICE gathered, no trickle); the server answers
``webrtc.answer``. One peer per session. No ICE server unless the operator configures one (never a
public STUN server by default).

Outbound: ``OutboundTrack`` is the track aiortc's sender pulls from. It paces itself on a 48 kHz sample
clock (20 ms frames, pts increasing by 960), sending silence when nothing is queued. The session's
``PacedOutput`` hands it frames ``webrtc_playout_lead_s`` ahead, and a barge-in clears both queues, so
nothing already queued keeps playing: what is left is what the network and the browser's own jitter
buffer hold.

Inbound: aiortc's receiver decodes Opus to 48 kHz frames; they are mixed to mono and resampled to the
session's 16 kHz here. aiortc's audio jitter buffer waits for 4 frames (80 ms) before it releases one;
``webrtc_jitter_frames`` replaces it (docs/webrtc.md has the measurement behind the default).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import aioice.ice
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from agent.audio import AUDIO_PTIME_S, Pcm
from agent.config import Settings
from agent.errors import ProtocolError
from streaming.codecs import StreamResampler, pcm_to_bytes

log = logging.getLogger(__name__)

RTC_RATE = 48_000
RTC_FRAME = round(RTC_RATE * AUDIO_PTIME_S)  # 960 samples
MAX_SDP_CHARS = 32 * 1024


# -- ICE on loopback --------------------------------------------------------------------------------
_host_addresses = aioice.ice.get_host_addresses


def _with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses: list[str] = _host_addresses(use_ipv4, use_ipv6)
    if use_ipv4 and "127.0.0.1" not in addresses:
        addresses.append("127.0.0.1")
    return addresses


def offer_loopback_candidates(enabled: bool) -> None:
    """aioice leaves 127.0.0.1 out of its host candidates; a browser on the same host (or a test in a
    network namespace with only loopback) can then not reach the server. Process-wide switch."""
    aioice.ice.get_host_addresses = _with_loopback if enabled else _host_addresses


def rtc_configuration(settings: Settings) -> RTCConfiguration:
    urls = [u.strip() for u in settings.webrtc.ice_servers.split(",") if u.strip()]
    return RTCConfiguration(iceServers=[RTCIceServer(urls=urls)] if urls else [])


# -- outbound ---------------------------------------------------------------------------------------
class OutboundTrack(MediaStreamTrack):
    """Agent audio towards the browser: 20 ms s16 mono frames at 48 kHz on the track's own clock."""

    kind = "audio"

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_queue_s: float = 0.1) -> None:
        """``max_queue_s``: live audio must not lag; beyond this much queued (frames pushed before the
        peer connected, a stalled sender) the oldest frames are dropped and counted."""
        super().__init__()
        self._queue: deque[bytes] = deque(maxlen=max(1, round(max_queue_s / AUDIO_PTIME_S)))
        self.dropped_frames = 0
        self._clock = clock
        self._start: float | None = None
        self._pts = 0
        self.silent_frames = 0  # frames sent with nothing queued (underruns and plain silence)
        self._resampler: StreamResampler | None = None
        self._pending = np.zeros(0, np.int16)

    def push(self, frame: bytes) -> None:
        """A 20 ms frame of 48 kHz s16 mono PCM (the PacedOutput sink)."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped_frames += 1
        self._queue.append(frame)

    def push_pcm(self, pcm: Pcm, sample_rate: int) -> None:
        """PCM of any length at ``sample_rate`` (a client's microphone): resampled, cut into frames."""
        if self._resampler is None:
            self._resampler = StreamResampler(sample_rate, RTC_RATE)
        buf = np.concatenate([self._pending, self._resampler.process(pcm)])
        whole = len(buf) // RTC_FRAME * RTC_FRAME
        for i in range(0, whole, RTC_FRAME):
            self.push(pcm_to_bytes(buf[i : i + RTC_FRAME]))
        self._pending = buf[whole:].copy()

    def clear(self) -> None:
        """Barge-in: drop every queued frame now."""
        self._queue.clear()

    @property
    def queued_s(self) -> float:
        return len(self._queue) * AUDIO_PTIME_S

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start is None:
            self._start = now
        else:
            self._pts += RTC_FRAME
            due = self._start + self._pts / RTC_RATE
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 0.2:  # the sender stalled (a slow loop): re-base, never burst
                self._start, self._pts = now, 0
        if self._queue:
            data = self._queue.popleft()
        else:
            data = bytes(RTC_FRAME * 2)
            self.silent_frames += 1
        frame = AudioFrame(format="s16", layout="mono", samples=RTC_FRAME)
        frame.planes[0].update(data)
        frame.pts = self._pts
        frame.sample_rate = RTC_RATE
        frame.time_base = fractions.Fraction(1, RTC_RATE)
        return frame


def to_mono_pcm(frame: AudioFrame) -> tuple[Pcm, int]:
    """A decoded frame (packed s16, any channel count) -> mono int16 and its sample rate."""
    samples = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.name != "s16":
        raise ValueError(f"unexpected decoded audio format {frame.format.name}")
    pcm = samples.reshape(-1, channels)
    mono = pcm[:, 0] if channels == 1 else pcm.astype(np.int32).mean(axis=1).astype(np.int16)
    return np.ascontiguousarray(mono, dtype=np.int16), int(frame.sample_rate)


# -- the peer ---------------------------------------------------------------------------------------
class RtcPeer:
    """One session's WebRTC peer. ``on_audio(pcm, sample_rate)`` gets the browser's microphone."""

    def __init__(self, settings: Settings, on_audio: Callable[[Pcm, int], None], session_id: str) -> None:
        self.settings = settings
        self.track = OutboundTrack()
        self._on_audio = on_audio
        self._session_id = session_id
        self._pc = RTCPeerConnection(rtc_configuration(settings))
        self._pc.addTrack(self.track)
        self._readers: list[asyncio.Task[None]] = []
        self.state = "new"
        self.frames_in = 0
        self.late_frames_in = 0  # decoded frames that came > 40 ms after the one before (a glitch)
        self.max_gap_in_s = 0.0

        @self._pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._readers.append(asyncio.create_task(self._read(track), name=f"{session_id}-rtc-in"))

        @self._pc.on("connectionstatechange")
        async def on_state() -> None:
            self.state = self._pc.connectionState
            log.info("session %s: WebRTC %s", session_id, self.state)

    async def answer(self, offer_sdp: str) -> str:
        """The browser's offer -> the server's answer (with every candidate in it)."""
        if len(offer_sdp) > MAX_SDP_CHARS or "m=audio" not in offer_sdp:
            raise ProtocolError("webrtc.offer needs an SDP offer with an audio section", code="bad_sdp")
        if self._pc.remoteDescription is not None:
            raise ProtocolError("this session already has a WebRTC peer", code="already_connected")
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except ValueError as e:
            raise ProtocolError(f"the SDP offer was not understood: {e}", code="bad_sdp") from e
        for transceiver in self._pc.getTransceivers():
            if transceiver.kind == "audio":
                transceiver.direction = "sendrecv"
                set_jitter_buffer(transceiver.receiver, self.settings.webrtc.jitter_frames)
        answer = await self._pc.createAnswer()
        await self._pc.setLocalDescription(answer)  # gathers candidates (no trickle)
        return str(self._pc.localDescription.sdp)

    async def _read(self, track: MediaStreamTrack) -> None:
        last: float | None = None
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not isinstance(frame, AudioFrame):
                    continue
                now = time.monotonic()
                if last is not None:
                    gap = now - last
                    self.max_gap_in_s = max(self.max_gap_in_s, gap)
                    self.late_frames_in += gap > 2 * AUDIO_PTIME_S
                last = now
                pcm, rate = to_mono_pcm(frame)
                self.frames_in += 1
                self._on_audio(pcm, rate)

    async def close(self) -> None:
        """Stop the peer and its reader tasks, and wait for them. Logs what the inbound audio was like."""
        log.info(
            "session %s: WebRTC in: %d frames, %d over 40 ms after the previous, longest gap %.0f ms; "
            "out: %d silent frames",
            self._session_id,
            self.frames_in,
            self.late_frames_in,
            self.max_gap_in_s * 1000,
            self.track.silent_frames,
        )
        for task in self._readers:
            task.cancel()
        if self._readers:
            await asyncio.wait(self._readers)  # a cancel of close() itself still propagates
        await self._pc.close()

    def stats(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "frames_in": self.frames_in,
            "silent_frames_out": self.track.silent_frames,
        }


def set_jitter_buffer(receiver: Any, frames: int) -> None:
    """aiortc fixes the audio jitter buffer at capacity 16, prefetch 4, with no option to change it;
    it is a private attribute of RTCRtpReceiver (aiortc 1.16), replaced here before any packet."""
    name = "_RTCRtpReceiver__jitter_buffer"
    if not hasattr(receiver, name):
        log.warning("aiortc changed: cannot set the audio jitter buffer (kept its default)")
        return
    setattr(receiver, name, JitterBuffer(capacity=16, prefetch=frames))
