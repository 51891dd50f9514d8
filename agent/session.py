"""One conversation: audio in -> VAD -> turn-taking -> ASR -> LLM -> clauses -> TTS -> audio out.

``Session.run()`` owns every task of the conversation in one TaskGroup: the input task (VAD and
turn-taking on each input frame) and, per user turn, one reply task (ASR final, LLM, TTS). turn.py
decides; this module executes its actions and runs the models in their worker threads.

Latency choices made here:
- the ASR pass starts when silence begins (``SilenceOnset``), not when the endpoint fires; if the user
  resumes, its result is dropped. At the endpoint the transcript is usually ready.
- the LLM streams; the first clause goes to TTS as soon as it is complete, while the LLM goes on;
- audio goes to the transport as each clause is synthesized.
Every stage stamps its first output; ``TurnMetrics`` carries the timeline to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.asr.base import Transcript
from agent.chunker import ClauseChunker, SpokenClause, heard_text
from agent.config import Settings
from agent.engines import Engines
from agent.errors import LimitError, StageError, VoxloopError
from agent.events import (
    AudioClear,
    Error,
    ResponseAudioDone,
    ResponseAudioStarted,
    ResponseDone,
    ResponseStarted,
    ResponseTextDelta,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    TurnMetrics,
)
from agent.io import AudioOutput, EventSink
from agent.llm.base import GenerationOptions
from agent.memory import Memory
from agent.tts.base import pause_after, trim_silence
from agent.turn import (
    VAD_RATE,
    Action,
    Commit,
    EndOfTurn,
    Interrupt,
    ReplyEnded,
    ReplyStarted,
    SilenceOnset,
    SpeechResumed,
    StartSpeech,
    StartText,
    TextTurn,
    TurnPolicy,
    TurnTaking,
)
from streaming.audio import AudioChunk, Pcm, float_to_pcm, pcm_to_float

log = logging.getLogger(__name__)

INPUT_RATE = VAD_RATE  # sessions take 16 kHz int16 input; transports convert
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


@dataclass
class _Timeline:
    """Monotonic stamps of one turn, reported relative to ``origin`` (the last speech sample's arrival)."""

    origin: float
    stamps: dict[str, float] = field(default_factory=dict)
    durations_ms: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str, at: float | None = None) -> None:
        self.stamps.setdefault(stage, time.monotonic() if at is None else at)

    def metrics(self, turn_id: int) -> TurnMetrics:
        timeline = {k: round((v - self.origin) * 1000.0, 1) for k, v in self.stamps.items()}
        return TurnMetrics(turn_id, {"speech_end": 0.0, **timeline}, dict(self.durations_ms))


@dataclass
class _Speculation:
    turn_id: int
    start: int
    end: int
    task: asyncio.Task[Transcript]


@dataclass(frozen=True, slots=True)
class _Text:
    text: str
    verbatim: bool


@dataclass(frozen=True, slots=True)
class _Cancel:
    pass


_InboxItem = tuple[Pcm, float] | Commit | _Text | _Cancel


class Session:
    """A conversation. Feed it with ``push_audio``; run ``run()`` as a task; cancel that task to end it."""

    def __init__(
        self,
        engines: Engines,
        settings: Settings,
        output: AudioOutput,
        emit: EventSink,
        *,
        session_id: str,
        system_prompt: str | None = None,
    ) -> None:
        self.engines = engines
        self.settings = settings
        self.session_id = session_id
        self._output = output
        self._emit = emit
        self.turns = TurnTaking(
            TurnPolicy(
                threshold=settings.vad_threshold,
                release_threshold=settings.vad_release_threshold,
                min_speech_s=settings.min_speech_s,
                endpoint_silence_s=settings.endpoint_silence_s,
                max_utterance_s=settings.max_utterance_s,
            )
        )
        self.memory = Memory(
            system_prompt or settings.system_prompt, settings.memory_budget_tokens, engines.llm.count_tokens
        )
        self._vad = engines.vad.stream()
        keep = int((settings.max_utterance_s + settings.preroll_s + 2.0) * INPUT_RATE)
        self._input = InputBuffer(keep)
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=4096)
        # One ordered inbox for audio and control, so "commit" is never processed before the audio
        # sent ahead of it. Only audio is dropped when it is full (oldest first, counted).
        self._inbox: deque[_InboxItem] = deque()
        self._inbox_audio = 0
        self._inbox_audio_max = max(4, int(settings.input_queue_s / 0.01))
        self._inbox_ready = asyncio.Event()
        self.dropped_input_frames = 0
        self._tasks: asyncio.TaskGroup | None = None
        self._reply: tuple[int, asyncio.Task[None]] | None = None
        self._speculation: _Speculation | None = None
        self._partial_task: asyncio.Task[None] | None = None
        self._partial_at = 0
        self._pending_text: dict[int, tuple[str, bool]] = {}  # turn_id -> (text, verbatim)
        self.turns_answered = 0

    # -- the transport's side ---------------------------------------------------------------------
    def push_audio(self, pcm16k: Pcm, received_at: float | None = None) -> None:
        """Queue 16 kHz input. Never blocks: when the queue is full the oldest frame is dropped."""
        if self._inbox_audio >= self._inbox_audio_max:
            oldest = next(i for i, item in enumerate(self._inbox) if isinstance(item, tuple))
            del self._inbox[oldest]
            self._inbox_audio -= 1
            self.dropped_input_frames += 1
        self._inbox_audio += 1
        self._put((pcm16k, time.monotonic() if received_at is None else received_at))

    def commit(self) -> None:
        """The user's turn is over now (push-to-talk release), after the audio already pushed."""
        self._put(Commit())

    def send_text(self, text: str, *, verbatim: bool = False) -> None:
        """A typed user message (answered by the LLM), or with ``verbatim`` a line the agent says as is."""
        if len(text) > self.settings.max_tts_chars:
            raise LimitError(
                f"text of {len(text)} characters; the limit is {self.settings.max_tts_chars}",
                code="text_too_long",
            )
        if not text.strip():
            raise LimitError("empty text", code="empty_text")
        self._put(_Text(text.strip(), verbatim))

    def cancel_response(self) -> None:
        """Stop the agent now (a client-side interrupt button)."""
        self._put(_Cancel())

    async def run(self) -> None:
        """Run until cancelled. Cancelling ends every task of the session and awaits them."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks = tg
                tg.create_task(self._input_loop(), name=f"{self.session_id}-input")
        finally:
            self._tasks = None

    # -- input ------------------------------------------------------------------------------------
    def _put(self, item: _InboxItem) -> None:
        self._inbox.append(item)
        self._inbox_ready.set()

    async def _input_loop(self) -> None:
        while True:
            if not self._inbox:
                self._inbox_ready.clear()
                await self._inbox_ready.wait()
                continue
            item = self._inbox.popleft()
            match item:
                case (pcm, received_at):
                    self._inbox_audio -= 1
                    await self._on_audio(pcm, received_at)
                case Commit():
                    for action in self.turns.feed(item):
                        await self._act(action)
                case _Text(text=text, verbatim=verbatim):
                    for action in self.turns.feed(TextTurn()):
                        if isinstance(action, StartText):
                            self._pending_text[action.turn_id] = (text, verbatim)
                        await self._act(action)
                case _Cancel():
                    if self._reply is not None:
                        await self._act(Interrupt(self._reply[0]))

    async def _on_audio(self, pcm: Pcm, received_at: float) -> None:
        end = self._input.append(pcm)
        self._arrivals.append((end, received_at))
        frames = await self.engines.vad_worker.run(self._vad.process, pcm)
        for frame in frames:
            for action in self.turns.feed(frame):
                await self._act(action)
        self._maybe_partial()

    def _arrival_of(self, sample: int) -> float:
        """When the server received the input frame holding ``sample``."""
        for end, t in self._arrivals:
            if end >= sample:
                return t
        return time.monotonic()

    async def _act(self, action: Action) -> None:
        match action:
            case StartSpeech(turn_id=tid, start_sample=start):
                self._partial_at = start
                self._emit(SpeechStarted(tid, start / INPUT_RATE))
            case Interrupt(turn_id=tid):
                await self._interrupt(tid)
            case SilenceOnset(turn_id=tid, start_sample=start, end_sample=end):
                self._cancel_speculation()
                task = asyncio.ensure_future(self._transcribe(start, self._input.end, final=True))
                self._speculation = _Speculation(tid, start, end, task)
            case SpeechResumed():
                self._cancel_speculation()
            case EndOfTurn(turn_id=tid, start_sample=start, end_sample=end, reason=reason):
                self._end_of_turn(tid, start, end, reason)
            case StartText(turn_id=tid):
                text, verbatim = self._pending_text.pop(tid)
                now = time.monotonic()
                self._start_reply(tid, self._reply_to_text(tid, text, verbatim, _Timeline(now)))

    def _end_of_turn(self, tid: int, start: int, end: int, reason: str) -> None:
        endpoint_at = time.monotonic()
        self._emit(SpeechStopped(tid, end / INPUT_RATE, reason))
        if reason == "max_length":
            self._emit(
                Error(
                    tid,
                    "utterance_too_long",
                    f"the utterance reached {self.settings.max_utterance_s:g} s; answering what was said",
                )
            )
        spec = self._speculation
        self._speculation = None
        if spec is not None and (spec.turn_id, spec.start, spec.end) == (tid, start, end):
            transcript_task = spec.task
        else:
            if spec is not None:
                spec.task.cancel()
            tail = int(ASR_TAIL_S * INPUT_RATE)
            transcript_task = asyncio.ensure_future(self._transcribe(start, end + tail, final=True))
        if self._partial_task is not None:
            self._partial_task.cancel()
        timeline = _Timeline(self._arrival_of(end))
        timeline.mark("endpoint", endpoint_at)
        self._start_reply(tid, self._reply_to_speech(tid, transcript_task, timeline))

    # -- ASR --------------------------------------------------------------------------------------
    async def _transcribe(self, start: int, end: int, *, final: bool) -> Transcript:
        preroll = int(self.settings.preroll_s * INPUT_RATE)
        audio = pcm_to_float(self._input.slice(start - preroll, end))
        return await self.engines.asr_worker.run(self.engines.asr.transcribe, audio, final=final)

    def _maybe_partial(self) -> None:
        interval = int(self.settings.partial_interval_s * INPUT_RATE)
        if (
            interval <= 0
            or self.turns.state.value != "speaking"
            or self._input.end - self._partial_at < interval
            or (self._partial_task is not None and not self._partial_task.done())
            or self.engines.asr_worker.pending
            or self._tasks is None
        ):
            return
        self._partial_at = self._input.end
        self._partial_task = self._tasks.create_task(self._partial(self.turns.turn_id))

    async def _partial(self, tid: int) -> None:
        try:
            transcript = await self._transcribe(self.turns.speech_start_sample, self._input.end, final=False)
        except VoxloopError as e:
            log.warning("%s: partial transcript failed: %s", self.session_id, e)
            return
        if tid == self.turns.turn_id and self.turns.state.value in ("speaking", "paused") and transcript.text:
            self._emit(TranscriptPartial(tid, transcript.text))

    def _cancel_speculation(self) -> None:
        if self._speculation is not None:
            self._speculation.task.cancel()
            self._speculation = None

    # -- replies ----------------------------------------------------------------------------------
    def _start_reply(self, tid: int, coro: Coroutine[Any, Any, None]) -> None:
        assert self._tasks is not None  # noqa: S101 - internal invariant: actions run inside run()
        if self._reply is not None and not self._reply[1].done():
            self._reply[1].cancel()
        self.turns.feed(ReplyStarted(tid))
        task = self._tasks.create_task(coro, name=f"{self.session_id}-reply-{tid}")
        self._reply = (tid, task)

    async def _interrupt(self, tid: int) -> None:
        """Barge-in: stop audio now, tell the client to drop its buffer, cancel and await the reply."""
        self._output.clear()
        self._emit(AudioClear(tid))
        if self._reply is not None and self._reply[0] == tid:
            task = self._reply[1]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._reply = None

    async def _reply_to_speech(
        self, tid: int, transcript_task: asyncio.Future[Transcript], tl: _Timeline
    ) -> None:
        try:
            try:
                transcript = await transcript_task
            except VoxloopError:
                raise
            except Exception as e:  # a model that fails mid-turn: report it, keep the session
                log.exception("%s: ASR failed", self.session_id)
                raise _stage_error("asr", e) from e
            tl.mark("asr_final")
            tl.durations_ms["asr"] = round(transcript.elapsed_s * 1000.0, 1)
            self._emit(TranscriptFinal(tid, transcript.text, round(transcript.audio_s, 3)))
            if not any(c.isalnum() for c in transcript.text):
                self._emit(ResponseDone(tid, "", interrupted=False))
                self._emit(tl.metrics(tid))
                return
            self.memory.add_user(transcript.text)
            await self._respond(tid, tl, llm=True, text=None)
        except VoxloopError as e:
            self._emit(Error(tid, e.code, e.message, e.fatal))
        finally:
            self.turns.feed(ReplyEnded(tid))

    async def _reply_to_text(self, tid: int, text: str, verbatim: bool, tl: _Timeline) -> None:
        try:
            if not verbatim:
                self.memory.add_user(text)
            await self._respond(tid, tl, llm=not verbatim, text=text if verbatim else None)
        except VoxloopError as e:
            self._emit(Error(tid, e.code, e.message, e.fatal))
        finally:
            self.turns.feed(ReplyEnded(tid))

    async def _respond(self, tid: int, tl: _Timeline, *, llm: bool, text: str | None) -> None:
        """Generate (or take) the reply text, speak it clause by clause, commit what was heard."""
        self._emit(ResponseStarted(tid))
        clauses: asyncio.Queue[str | None] = asyncio.Queue()
        spoken: list[SpokenClause] = []
        said: list[str] = []
        try:
            try:
                async with asyncio.TaskGroup() as tg:
                    if llm:
                        tg.create_task(self._generate(tid, tl, clauses))
                    else:
                        assert text is not None  # noqa: S101 - verbatim replies carry their text
                        chunker = ClauseChunker()
                        for c in [*chunker.push(text), *chunker.flush()]:
                            clauses.put_nowait(c)
                        clauses.put_nowait(None)
                    tg.create_task(self._synthesize(tid, tl, clauses, spoken, said))
            except ExceptionGroup as group:
                raise _first_error(group) from None
            self._output.end_turn(tid)
            sent_s = await self._output.wait_done(tid)
            # wait_done returns when the last frame left; the listener hears it up to lead_s later.
            await asyncio.sleep(self.settings.playout_lead_s)
            full = " ".join(said)
            self.memory.add_assistant(full)
            self._emit(ResponseAudioDone(tid, round(sent_s, 3)))
            self._emit(ResponseDone(tid, full, interrupted=False))
            self.turns_answered += 1
            started = self._output.first_sent_at(tid)
            if started is not None:
                tl.mark("audio_first_sent", started)
            self._emit(tl.metrics(tid))
        except asyncio.CancelledError:
            heard = heard_text(spoken, self._output.played_s(tid))
            self.memory.add_assistant(heard, interrupted=True)
            self._emit(ResponseDone(tid, heard, interrupted=True))
            raise
        finally:
            self._output.forget(tid)

    async def _generate(self, tid: int, tl: _Timeline, clauses: asyncio.Queue[str | None]) -> None:
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[str | None] = asyncio.Queue()
        stop = threading.Event()
        messages = self.memory.render()
        options = GenerationOptions(self.settings.max_reply_tokens, self.settings.temperature)
        llm = self.engines.llm

        def work() -> None:
            try:
                for delta in llm.stream_chat(messages, options, stop):
                    loop.call_soon_threadsafe(deltas.put_nowait, delta)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop may be gone at shutdown
                    loop.call_soon_threadsafe(deltas.put_nowait, None)

        started = time.perf_counter()
        future = asyncio.ensure_future(self.engines.llm_worker.run(work))
        chunker = ClauseChunker()
        try:
            while (delta := await deltas.get()) is not None:
                tl.mark("llm_first_token")
                self._emit(ResponseTextDelta(tid, delta))
                for clause in chunker.push(delta):
                    clauses.put_nowait(clause)
            try:
                await future
            except Exception as e:
                log.exception("%s: LLM failed", self.session_id)
                raise _stage_error("llm", e) from e
            tl.durations_ms["llm"] = round((time.perf_counter() - started) * 1000.0, 1)
            for clause in chunker.flush():
                clauses.put_nowait(clause)
        finally:
            stop.set()
            clauses.put_nowait(None)

    async def _synthesize(
        self,
        tid: int,
        tl: _Timeline,
        clauses: asyncio.Queue[str | None],
        spoken: list[SpokenClause],
        said: list[str],
    ) -> None:
        tts = self.engines.tts
        position_s = 0.0
        tts_ms = 0.0
        while (clause := await clauses.get()) is not None:
            tl.mark("first_clause")
            started = time.perf_counter()
            try:
                audio = await self.engines.tts_worker.run(tts.synthesize, clause)
            except Exception as e:
                log.exception("%s: TTS failed", self.session_id)
                raise _stage_error("tts", e) from e
            tts_ms += (time.perf_counter() - started) * 1000.0
            tl.mark("tts_first_audio")
            audio = trim_silence(audio, tts.sample_rate, tail_s=pause_after(clause))
            if len(audio) == 0:
                continue
            duration_s = len(audio) / tts.sample_rate
            spoken.append(SpokenClause(clause, position_s, position_s + duration_s))
            said.append(clause)
            if position_s == 0.0:
                self._emit(ResponseAudioStarted(tid, tts.sample_rate))
            position_s += duration_s
            self._output.push(tid, AudioChunk(float_to_pcm(audio), tts.sample_rate))
        tl.durations_ms["tts"] = round(tts_ms, 1)


def _stage_error(stage: str, e: Exception) -> VoxloopError:
    return StageError(f"the {stage} model failed: {type(e).__name__}: {e}", code=f"{stage}_failed")


def _first_error(group: ExceptionGroup) -> VoxloopError:
    """The error a client should see from a failed reply pipeline (the first one raised)."""
    for e in group.exceptions:
        if isinstance(e, VoxloopError):
            return e
    log.error("reply pipeline failed", exc_info=group)
    return StageError(f"internal error: {group.exceptions[0]!r}", code="internal_error")
