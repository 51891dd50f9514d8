"""The input side of a session: echo cancellation, the input buffer, VAD, the echo gate, and the ASR
requests on it.

Audio arrives at 16 kHz (agent.audio.INPUT_RATE). Unless the client cancels echo itself (a browser),
the agent's own voice is first subtracted from it (agent/aec.py, with what the server sent as the
reference); the cleaned audio is kept, addressable by sample position, for as long as an utterance can
last. Each frame goes through the VAD (in the VAD queue's thread) and, while the agent's own audio may
still be echoing back, through the echo gate (the second line); the resulting ``VadFrame``s feed
turn-taking. ASR passes are requests to the shared ASR engine: a final pass (a reply answers it), an
overlap pass (what was said over the agent?) or a partial pass (the live transcript), in that order
of priority; each is a future the session may cancel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque

import numpy as np
import soxr

from agent.aec import EchoCanceller
from agent.asr.base import AsrPurpose, AsrRequest, Transcript
from agent.audio import INPUT_RATE, Pcm, pcm_to_float
from agent.config import Settings
from agent.echo import EchoGate, EchoGatePolicy
from agent.engines import Engines
from agent.vad.base import VadFrame

ASR_TAIL_S = 0.15  # audio after the last speech frame given to ASR (the VAD releases a little early)


class InputBuffer:
    """The recent input stream, addressable by sample position. Keeps ``keep_samples`` at most."""

    def __init__(self, keep_samples: int) -> None:
        self._chunks: deque[tuple[int, Pcm]] = deque()
        self._keep = keep_samples
        self.end = 0  # samples received so far

    def append(self, pcm: Pcm) -> int:
        self._chunks.append((self.end, pcm))
        self.end += len(pcm)
        while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]) < self.end - self._keep:
            self._chunks.popleft()
        return self.end

    def slice(self, start: int, end: int) -> Pcm:
        start, end = max(start, 0), min(end, self.end)
        parts = [
            pcm[max(start - pos, 0) : end - pos]
            for pos, pcm in self._chunks
            if pos < end and pos + len(pcm) > start
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)


class Hearing:
    def __init__(self, engines: Engines, settings: Settings) -> None:
        self._engines = engines
        self._settings = settings
        self._vad = engines.vad.stream()
        self.echo: EchoGate | None = None
        if settings.turn.echo_gate:
            self.echo = EchoGate(EchoGatePolicy(max_delay_s=settings.turn.echo_max_delay_s))
        self.aec: EchoCanceller | None = EchoCanceller() if settings.audio.aec == "webrtc" else None
        self._cleaning = False  # AEC3's output is what the gate sees
        self._reference_rate = 0
        self._reference_resampler: soxr.ResampleStream | None = None
        keep = int((settings.turn.max_utterance_s + settings.asr.preroll_s + 2.0) * INPUT_RATE)
        self.buffer = InputBuffer(keep)
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=4096)
        self._partial: asyncio.Future[Transcript] | None = None
        self._partial_at = 0
        self._passes: set[asyncio.Future[Transcript]] = set()  # ASR passes not done yet

    @property
    def end(self) -> int:
        """Samples heard so far (the input position)."""
        return self.buffer.end

    def client_cancels_echo(self) -> None:
        """The client removes its own echo (a browser's getUserMedia): no server-side AEC, which
        would only distort what is left; loud speech through the gate is the user's."""
        self.aec = None
        if self.echo is not None:
            self.echo.trust_open = True

    async def frames(self, pcm: Pcm, received_at: float) -> list[VadFrame]:
        """Take one input chunk; return its VAD windows, gated by the echo gate. Cancel-safe: a
        cancelled call has stored the audio, and its VAD result is dropped."""
        if self.aec is not None:
            pcm = self.aec.process(pcm)
            if self.echo is not None and self.aec.echo_detected != self._cleaning:
                # The gate's input changed (cleaned, or raw again): what it learned no longer holds.
                self._cleaning = self.aec.echo_detected
                policy = self.echo.policy
                self.echo.restart(
                    policy.after_aec_prior if self._cleaning else policy.prior, trust_open=self._cleaning
                )
            if not len(pcm):
                return []
        end = self.buffer.append(pcm)
        self._arrivals.append((end, received_at))
        frames = await self._engines.vad.process(self._vad, pcm)
        if self.echo is None:
            return frames
        gated = []
        for frame in frames:
            start = frame.end_sample - frame.samples
            window = self.buffer.slice(start, frame.end_sample)
            speech = frame.probability >= self._settings.vad.threshold
            near_end, raw_return, absent = False, 0.0, False
            if self.aec is not None:
                near_end = self.aec.near_end(start, frame.end_sample)
                raw_return = self.aec.raw_echo_return(start, frame.end_sample)
                absent = self.aec.echo_absent
            allowed = self.echo.allows(
                window, start, frame.end_sample, speech, near_end, raw_return, echo_absent=absent
            )
            gated.append(dataclasses.replace(frame, gate=frame.gate and allowed))
        return gated

    def reference(self, frame: Pcm, sample_rate: int) -> None:
        """The agent's audio as it leaves: the far-end reference of the canceller and the gate."""
        if not len(frame):
            return
        at = self.position_now()
        if self.aec is not None:
            self.aec.reference(self._at_input_rate(frame, sample_rate), at)
        if self.echo is not None:
            peak = float(np.abs(frame.astype(np.int32)).max()) / 32768.0
            self.echo.reference(peak, at, len(frame) * INPUT_RATE // sample_rate)

    def position_now(self) -> int:
        """The input position at this instant, between frames: the samples heard so far plus the time
        since the last frame came (at most one 20 ms frame more). Input arrives in 20 ms steps, so
        without this a reply's reference would land up to 20 ms off from where the last one did,
        and the canceller would have to find the echo's delay again at the start of every reply."""
        if not self._arrivals:
            return self.buffer.end
        end, received_at = self._arrivals[-1]
        ahead = (time.monotonic() - received_at) * INPUT_RATE
        return end + int(min(max(ahead, 0.0), INPUT_RATE * 0.02))

    def _at_input_rate(self, frame: Pcm, sample_rate: int) -> Pcm:
        if sample_rate == INPUT_RATE:
            return frame
        if self._reference_resampler is None or self._reference_rate != sample_rate:
            self._reference_resampler = soxr.ResampleStream(sample_rate, INPUT_RATE, 1, dtype="int16")
            self._reference_rate = sample_rate
        out: Pcm = self._reference_resampler.resample_chunk(frame)
        return out

    def arrival_of(self, sample: int) -> float:
        """When the server received the input frame holding ``sample``."""
        for end, t in self._arrivals:
            if end >= sample:
                return t
        return time.monotonic()

    def transcribe(self, start: int, end: int, purpose: AsrPurpose) -> asyncio.Future[Transcript]:
        """An ASR pass over [start, end) of the input (with the preroll before it). Cancelling the
        future drops the request if it has not run yet."""
        preroll = int(self._settings.asr.preroll_s * INPUT_RATE)
        audio = pcm_to_float(self.buffer.slice(start - preroll, end))
        future = self._engines.asr.transcribe(AsrRequest(audio, purpose))
        self._passes.add(future)
        future.add_done_callback(self._passes.discard)
        return future

    def tilt_db(self, start: int, end: int) -> float | None:
        """How much of [start, end)'s energy lies high (2-3.8 kHz) against low (80-1000 Hz), in dB:
        a hum with the mouth closed ("mm-hmm", "hmm") sits near -23 dB, words at -13 to -21 dB
        (the band stops under 4 kHz, so phone audio reads the same)."""
        pcm = self.buffer.slice(start, end).astype(np.float64)
        if len(pcm) < INPUT_RATE // 10:
            return None
        spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
        freq = np.fft.rfftfreq(len(pcm), 1.0 / INPUT_RATE)
        low = float(spectrum[(freq > 80) & (freq < 1000)].sum())
        high = float(spectrum[(freq > 2000) & (freq < 3800)].sum())
        if low <= 0.0:
            return None
        return 10.0 * float(np.log10(high / low + 1e-12))

    def reply_started(self) -> None:
        """The agent begins a reply: the canceller looks for its echo's delay afresh (agent/aec.py)."""
        if self.aec is not None:
            self.aec.reply_started()

    def louder_than_echo_s(self, start: int, end: int) -> float | None:
        """How long [start, end) held a voice louder than the agent's echo (agent/aec.py), or None
        where there is no canceller or it hears no echo."""
        return self.aec.louder_than_echo_s(start, end) if self.aec is not None else None

    def close(self) -> None:
        """Cancel every ASR pass not done yet (the session is over: queued ones never run)."""
        for future in list(self._passes):
            future.cancel()

    def tail(self, end: int) -> int:
        """Where a pass over speech ending at ``end`` should stop (a little after it)."""
        return end + int(ASR_TAIL_S * INPUT_RATE)

    def partial_due(self, speaking: bool) -> bool:
        """Whether a partial pass should start now: the user is speaking, it is time, and the ASR
        queue is idle (a partial never makes another pass wait, and partials never pile up)."""
        interval = int(self._settings.asr.partial_interval_s * INPUT_RATE)
        return (
            interval > 0
            and speaking
            and self.buffer.end - self._partial_at >= interval
            and (self._partial is None or self._partial.done())
            and self._engines.asr.queue.pending == 0
        )

    def start_partial(self, speech_start: int) -> asyncio.Future[Transcript]:
        self._partial_at = self.buffer.end
        self._partial = self.transcribe(speech_start, self.buffer.end, AsrPurpose.PARTIAL)
        return self._partial

    def speech_started(self, start: int) -> None:
        self._partial_at = start

    def cancel_partial(self) -> None:
        if self._partial is not None:
            self._partial.cancel()
            self._partial = None
