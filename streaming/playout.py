"""Agent audio out, paced by the sample clock: 20 ms frames, increasing pts, cleared at once.

Frames go to the transport ``lead_s`` ahead of real time: enough to ride over scheduling jitter, small
enough that a ``clear()`` leaves at most that much audio in the client's buffer (the client drops it
too on ``audio.clear``). After an underrun (TTS slower than real time, a pause between clauses) the
clock is re-based, so late audio is not burst out to "catch up".
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from agent.audio import AUDIO_PTIME_S, AudioChunk, Pcm
from agent.events import AudioFrame
from streaming.codecs import StreamResampler

FrameSink = Callable[[AudioFrame], None]  # one 20 ms frame, tagged with its turn, as it leaves


@dataclass
class _Turn:
    resampler: StreamResampler | None = None
    pending: Pcm = field(default_factory=lambda: np.zeros(0, np.int16))
    queued_samples: int = 0
    sent_samples: int = 0
    first_sent_at: float | None = None
    paused_at_first_send: float = 0.0  # the output's paused total when this turn's first frame left
    # The listener's own word: (seconds played, clock time of the report, paused total then).
    report: tuple[float, float, float] | None = None
    done: asyncio.Future[float] | None = None


class PacedOutput:
    """AudioOutput over a frame sink. Run ``run()`` as a task for as long as the session lives."""

    def __init__(
        self,
        sample_rate: int,
        send: FrameSink,
        *,
        lead_s: float = 0.06,
        clock: Callable[[], float] = time.monotonic,
        on_clear: Callable[[], None] | None = None,
    ) -> None:
        """``on_clear``: also drop what the sink itself holds (a WebRTC track's queue) on clear()."""
        self.sample_rate = sample_rate
        self.frame_samples = round(sample_rate * AUDIO_PTIME_S)
        self._send = send
        self._lead_s = lead_s
        self._clock = clock
        self._frames: deque[tuple[int, Pcm | None]] = deque()  # None marks a turn's end
        self._turns: dict[int, _Turn] = {}
        self._wake = asyncio.Event()
        self._t0: float | None = None  # clock time of sample 0 of the current talk spurt
        self._spurt_samples = 0
        self.pts = 0  # samples sent since the output started
        self.underruns = 0
        self._paused_since: float | None = None
        self._paused_total = 0.0
        self._sent_listener: Callable[[Pcm, int], None] | None = None
        self._on_clear = on_clear

    # -- AudioOutput ------------------------------------------------------------------------------
    def push(self, turn_id: int, chunk: AudioChunk) -> None:
        turn = self._turn(turn_id)
        if turn.resampler is None:
            turn.resampler = StreamResampler(chunk.sample_rate, self.sample_rate)
        pcm = turn.resampler.process(chunk.pcm)
        self._enqueue(turn_id, turn, np.concatenate([turn.pending, pcm]), final=False)

    def end_turn(self, turn_id: int) -> None:
        turn = self._turn(turn_id)
        tail = turn.resampler.flush() if turn.resampler is not None else np.zeros(0, np.int16)
        self._enqueue(turn_id, turn, np.concatenate([turn.pending, tail]), final=True)
        self._frames.append((turn_id, None))
        self._wake.set()

    def clear(self) -> None:
        dropped = {tid for tid, _ in self._frames}
        self._frames.clear()
        for tid in dropped | set(self._turns):
            turn = self._turns[tid]
            turn.pending = np.zeros(0, np.int16)
            turn.queued_samples = turn.sent_samples
            self._resolve(turn)
        self._t0 = None
        if self._on_clear is not None:
            self._on_clear()
        self.resume()

    def set_sent_listener(self, listener: Callable[[Pcm, int], None] | None) -> None:
        self._sent_listener = listener

    def pause(self) -> None:
        """Stop sending now, keeping what is queued (the listener may only be saying "uh-huh")."""
        if self._paused_since is None:
            self._paused_since = self._clock()

    def resume(self) -> None:
        """Go on sending from where pause() stopped, on a fresh clock (no burst to catch up)."""
        if self._paused_since is not None:
            self._paused_total += self._clock() - self._paused_since
            self._paused_since = None
            self._t0 = None
            self._wake.set()

    @property
    def paused(self) -> bool:
        return self._paused_since is not None

    def _paused_so_far(self) -> float:
        ongoing = 0.0 if self._paused_since is None else self._clock() - self._paused_since
        return self._paused_total + ongoing

    def played_s(self, turn_id: int) -> float:
        """The listener's position in ``turn_id``: from its latest report when it sends them (moved on
        by the time since, less time paused), else from what was sent and when. Never past what was sent.
        """
        turn = self._turns.get(turn_id)
        if turn is None or turn.first_sent_at is None:
            return 0.0
        if turn.report is not None:
            played, at, paused_then = turn.report
            since = max(0.0, self._clock() - at - (self._paused_so_far() - paused_then))
            return min(turn.sent_samples / self.sample_rate, played + since)
        paused = self._paused_so_far() - turn.paused_at_first_send
        elapsed = max(0.0, self._clock() - turn.first_sent_at - paused)
        return min(turn.sent_samples / self.sample_rate, elapsed)

    def report_played(self, turn_id: int, played_s: float) -> None:
        """The listener says it has played ``played_s`` seconds of ``turn_id`` (a turn no longer
        tracked, or never sent, is ignored: the report is stale)."""
        turn = self._turns.get(turn_id)
        if turn is not None and turn.first_sent_at is not None:
            turn.report = (max(0.0, played_s), self._clock(), self._paused_so_far())

    def sent_s(self, turn_id: int) -> float:
        turn = self._turns.get(turn_id)
        return 0.0 if turn is None else turn.sent_samples / self.sample_rate

    def first_sent_at(self, turn_id: int) -> float | None:
        turn = self._turns.get(turn_id)
        return None if turn is None else turn.first_sent_at

    async def wait_done(self, turn_id: int) -> float:
        turn = self._turn(turn_id)
        if turn.done is None:
            turn.done = asyncio.get_running_loop().create_future()
        return await asyncio.shield(turn.done)

    def forget(self, turn_id: int) -> None:
        """Release a finished turn's bookkeeping."""
        self._turns.pop(turn_id, None)

    # -- the pacing task --------------------------------------------------------------------------
    async def run(self) -> None:
        """Send queued frames on the sample clock until cancelled (cancelling is the way to stop)."""
        while True:
            if not self._frames or self._paused_since is not None:
                self._wake.clear()
                await self._wake.wait()
                continue
            turn_id, frame = self._frames[0]
            if frame is None:
                self._frames.popleft()
                self._resolve(self._turn(turn_id))
                continue
            now = self._clock()
            if self._t0 is None:
                self._t0, self._spurt_samples = now, 0
            due = self._t0 + self._spurt_samples / self.sample_rate - self._lead_s
            if due < now - self._lead_s - AUDIO_PTIME_S:
                # Underrun: the listener's buffer ran dry. Re-base instead of bursting to catch up.
                self.underruns += 1
                self._t0, self._spurt_samples = now, 0
                due = now - self._lead_s
            if due > now:
                await asyncio.sleep(due - now)
                if not self._frames or self._frames[0][1] is not frame or self._paused_since is not None:
                    continue  # cleared or paused while sleeping
            self._frames.popleft()
            turn = self._turn(turn_id)
            if turn.first_sent_at is None:
                turn.first_sent_at = self._clock()
                turn.paused_at_first_send = self._paused_so_far()
            self._send(AudioFrame(turn_id, frame, self.sample_rate, self.pts))
            if self._sent_listener is not None:
                self._sent_listener(frame, self.sample_rate)
            turn.sent_samples += len(frame)
            self._spurt_samples += len(frame)
            self.pts += len(frame)

    # -- internals --------------------------------------------------------------------------------
    def _turn(self, turn_id: int) -> _Turn:
        turn = self._turns.get(turn_id)
        if turn is None:
            turn = self._turns[turn_id] = _Turn()
        return turn

    def _enqueue(self, turn_id: int, turn: _Turn, pcm: Pcm, *, final: bool) -> None:
        n = self.frame_samples
        whole = len(pcm) // n * n
        for i in range(0, whole, n):
            self._frames.append((turn_id, pcm[i : i + n]))
        rest = pcm[whole:]
        if final and len(rest):
            self._frames.append((turn_id, np.concatenate([rest, np.zeros(n - len(rest), np.int16)])))
            rest = rest[:0]
        turn.queued_samples += whole
        turn.pending = rest.copy()
        if whole:
            self._wake.set()

    def _resolve(self, turn: _Turn) -> None:
        if turn.done is None:
            turn.done = asyncio.get_running_loop().create_future()
        if not turn.done.done():
            turn.done.set_result(turn.sent_samples / self.sample_rate)
