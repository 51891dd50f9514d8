"""One conversation: audio in -> VAD -> turn-taking -> ASR -> reply (agent/reply.py) -> audio out.

``Session.run()`` owns every task of the conversation in one TaskGroup: the input task (VAD and
turn-taking on each input frame, in order with control messages) and the replies. turn.py decides;
this module executes its actions and runs the models in their worker threads.

The speculative pipeline, as a timeline of one pause:
- silence begins (``SilenceOnset``): the final ASR pass starts on the speech so far;
- the transcript is ready (``TranscriptReady``): turn.py sets the endpoint silence from it (short for
  a finished sentence, long for a dangling one) and asks to ``Speculate``: a held reply starts, LLM and
  TTS running while the user is silent, nothing sent, nothing remembered;
- the endpoint (``EndOfTurn``) releases the held reply: what it has made goes out at once;
- the user resumes (``SpeechResumed``): the ASR pass and the held reply are dropped without trace.
Every stage stamps its first output; ``TurnMetrics`` carries the timeline to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.asr.base import Transcript
from agent.config import Settings
from agent.echo import EchoGate, EchoGatePolicy
from agent.engines import Engines
from agent.errors import LimitError, ProtocolError
from agent.events import AudioClear, DtmfReceived, Error, SpeechStarted, SpeechStopped, TranscriptPartial
from agent.io import AudioOutput, EventSink
from agent.memory import Memory
from agent.reply import Reply, ReplyContext, Timeline
from agent.turn import (
    PROFILES,
    VAD_RATE,
    Action,
    ClassifyOverlap,
    Commit,
    EndOfTurn,
    Interrupt,
    OverlapHeard,
    PauseReply,
    ReplyEnded,
    ReplyStarted,
    ResumeReply,
    SilenceOnset,
    Speculate,
    SpeechResumed,
    StartSpeech,
    StartText,
    TextTurn,
    TranscriptReady,
    TurnPolicy,
    TurnTaking,
    transcript_complete,
    with_profile,
)
from streaming.audio import Pcm, pcm_to_float

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
class _Pause:
    """The ASR pass of one pause, and the held reply built on it."""

    turn_id: int
    start: int
    end: int
    asr: asyncio.Task[Transcript]
    reply: Reply | None = None
    reply_task: asyncio.Task[None] | None = None

    def matches(self, turn_id: int, start: int, end: int) -> bool:
        return (self.turn_id, self.start, self.end) == (turn_id, start, end)

    def cancel(self) -> None:
        self.asr.cancel()
        if self.reply_task is not None:
            self.reply_task.cancel()


@dataclass(frozen=True, slots=True)
class _OverlapDone:
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class _AsrDone:
    turn_id: int
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class _Text:
    text: str
    verbatim: bool


@dataclass(frozen=True, slots=True)
class _Cancel:
    pass


_InboxItem = tuple[Pcm, float] | Commit | _Text | _Cancel | _AsrDone | _OverlapDone


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
        profile: str | None = None,
    ) -> None:
        self.engines = engines
        self.settings = settings
        self.session_id = session_id
        self._output = output
        self._emit = emit
        self._base_policy = TurnPolicy(
            threshold=settings.vad_threshold,
            release_threshold=settings.vad_release_threshold,
            min_speech_s=settings.min_speech_s,
            endpoint_silence_s=settings.endpoint_silence_s,
            endpoint_complete_s=settings.endpoint_complete_s,
            endpoint_incomplete_s=settings.endpoint_incomplete_s,
            max_utterance_s=settings.max_utterance_s,
            barge_in_min_speech_s=settings.barge_in_min_speech_s,
            barge_in_confirm_s=settings.barge_in_confirm_s,
            false_interruption_timeout_s=settings.false_interruption_timeout_s,
            backchannels=frozenset(w.strip().lower() for w in settings.backchannels.split(",") if w.strip()),
        )
        self.profile = ""
        self.turns = TurnTaking(self._base_policy)
        self.set_profile(profile or settings.turn_profile)
        self.memory = Memory(
            system_prompt or settings.system_prompt, settings.memory_budget_tokens, engines.llm.count_tokens
        )
        self._vad = engines.vad.stream()
        self.echo: EchoGate | None = None
        if settings.echo_gate:
            self.echo = EchoGate(EchoGatePolicy(max_delay_s=settings.echo_max_delay_s))
            output.set_sent_listener(self._on_sent)
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
        self._live: tuple[Reply, asyncio.Task[None]] | None = None  # the reply the user hears
        self._cut: Reply | None = None  # the last reply cut off by the user, until the client's word
        self._reply_context = ReplyContext(engines, settings, self.memory, output, emit, session_id)
        self._pause: _Pause | None = None
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

    def set_profile(self, name: str) -> None:
        """Switch the turn-taking profile (conversation, tutoring, phone); applies from the next frame."""
        if name not in PROFILES:
            raise ProtocolError(
                f"unknown profile {name!r}; use one of {', '.join(PROFILES)}", code="unknown_profile"
            )
        self.profile = name
        self.turns.policy = with_profile(self._base_policy, name)

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

    def report_playback(self, turn_id: int, played_s: float) -> None:
        """The client's playback position in ``turn_id`` (seconds it has played). While the reply
        plays, it sharpens the estimate of what was heard; after a cut, it corrects memory to it."""
        self._output.report_played(turn_id, played_s)
        if self._cut is not None and self._cut.turn_id == turn_id:
            text = self._cut.amend_heard(played_s)
            log.debug("%s: turn %d heard up to %.2f s: %r", self.session_id, turn_id, played_s, text)

    def dtmf(self, digit: str) -> None:
        """A key the caller pressed (telephony): reported to the client as an event, in order."""
        self._emit(DtmfReceived(self.turns.turn_id, digit))

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
                    if self._live is not None:
                        await self._act(Interrupt(self._live[0].turn_id))
                case _OverlapDone(start=start, end=end, text=text):
                    agent_text = self._live[0].said_text if self._live is not None else ""
                    for action in self.turns.feed(OverlapHeard(start, end, text, agent_text)):
                        await self._act(action)
                case _AsrDone(turn_id=tid, start=start, end=end, text=text):
                    ready = TranscriptReady(tid, start, end, transcript_complete(text))
                    for action in self.turns.feed(ready):
                        await self._act(action)

    def _on_sent(self, frame: Pcm, sample_rate: int) -> None:
        """The agent's audio as it leaves: the echo gate's far-end reference."""
        if self.echo is not None and len(frame):
            peak = float(np.abs(frame.astype(np.int32)).max()) / 32768.0
            self.echo.reference(peak, self._input.end, len(frame) * INPUT_RATE // sample_rate)

    async def _on_audio(self, pcm: Pcm, received_at: float) -> None:
        end = self._input.append(pcm)
        self._arrivals.append((end, received_at))
        frames = await self.engines.vad_worker.run(self._vad.process, pcm)
        for frame in frames:
            if self.echo is not None:
                start = frame.end_sample - frame.samples
                window = self._input.slice(start, frame.end_sample)
                allowed = self.echo.allows(window, start, frame.end_sample)  # learns from every window
                frame = dataclasses.replace(frame, gate=frame.gate and allowed)
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
        log.debug("%s: %s (state %s)", self.session_id, action, self.turns.state.value)
        match action:
            case StartSpeech(turn_id=tid, start_sample=start):
                self._partial_at = start
                self._emit(SpeechStarted(tid, start / INPUT_RATE))
            case Interrupt(turn_id=tid):
                await self._interrupt(tid)
            case SilenceOnset(turn_id=tid, start_sample=start, end_sample=end):
                self._drop_pause()
                task = asyncio.ensure_future(self._transcribe(start, self._input.end, final=True))
                task.add_done_callback(functools.partial(self._asr_done, tid, start, end))
                self._pause = _Pause(tid, start, end, task)
            case PauseReply():
                self._output.pause()
            case ResumeReply():
                self._output.resume()
            case ClassifyOverlap(start_sample=start, end_sample=end):
                task = asyncio.ensure_future(
                    self._transcribe(start, end + int(ASR_TAIL_S * INPUT_RATE), final=False)
                )
                task.add_done_callback(functools.partial(self._overlap_done, start, end))
            case Speculate(turn_id=tid, start_sample=start, end_sample=end):
                self._speculate(tid, start, end)
            case SpeechResumed():
                self._drop_pause()
            case EndOfTurn(turn_id=tid, start_sample=start, end_sample=end, reason=reason):
                self._end_of_turn(tid, start, end, reason)
            case StartText(turn_id=tid):
                text, verbatim = self._pending_text.pop(tid)
                reply = Reply(self._reply_context, tid, Timeline(time.monotonic()), held=False)
                self._go_live(reply, self._spawn(reply.to_text(text, verbatim=verbatim), tid))

    def _overlap_done(self, start: int, end: int, task: asyncio.Task[Transcript]) -> None:
        if not task.cancelled():
            failed = task.exception() is not None  # no words heard: the timeout resumes the agent
            if not failed:
                self._put(_OverlapDone(start, end, task.result().text))

    def _asr_done(self, tid: int, start: int, end: int, task: asyncio.Task[Transcript]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._put(_AsrDone(tid, start, end, task.result().text))

    def _speculate(self, tid: int, start: int, end: int) -> None:
        pause = self._pause
        if not self.settings.speculative_reply or pause is None or not pause.matches(tid, start, end):
            return
        if pause.reply is None and any(c.isalnum() for c in pause.asr.result().text):
            pause.reply = Reply(self._reply_context, tid, Timeline(self._arrival_of(end)), held=True)
            pause.reply_task = self._spawn(pause.reply.to_speech(pause.asr), tid)

    def _drop_pause(self) -> None:
        """The pause's ASR pass and held reply are void: nothing of them reached the client or memory."""
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None

    def _end_of_turn(self, tid: int, start: int, end: int, reason: str) -> None:
        endpoint_at = time.monotonic()
        self._emit(SpeechStopped(tid, end / INPUT_RATE, reason))
        if reason == "max_length":
            limit = self.settings.max_utterance_s
            self._emit(
                Error(
                    tid, "utterance_too_long", f"the utterance reached {limit:g} s; answering what was said"
                )
            )
        if self._partial_task is not None:
            self._partial_task.cancel()
        pause, self._pause = self._pause, None
        if pause is not None and pause.matches(tid, start, end):
            if pause.reply is not None and pause.reply_task is not None:
                pause.reply.timeline.mark("endpoint", endpoint_at)
                pause.reply.release()
                self._go_live(pause.reply, pause.reply_task)
                return
            transcript_task = pause.asr
        else:
            if pause is not None:
                pause.cancel()
            tail = int(ASR_TAIL_S * INPUT_RATE)
            transcript_task = asyncio.ensure_future(self._transcribe(start, end + tail, final=True))
        reply = Reply(self._reply_context, tid, Timeline(self._arrival_of(end)), held=False)
        reply.timeline.mark("endpoint", endpoint_at)
        self._go_live(reply, self._spawn(reply.to_speech(transcript_task), tid))

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
        except Exception as e:  # best effort: a failing model shows up in the final pass, as an error
            log.warning("%s: partial transcript failed: %r", self.session_id, e)
            return
        if tid == self.turns.turn_id and self.turns.state.value in ("speaking", "paused") and transcript.text:
            self._emit(TranscriptPartial(tid, transcript.text))

    # -- replies ----------------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None], tid: int) -> asyncio.Task[None]:
        if self._tasks is None:
            raise RuntimeError("a session acts only inside run()")
        return self._tasks.create_task(coro, name=f"{self.session_id}-reply-{tid}")

    def _go_live(self, reply: Reply, task: asyncio.Task[None]) -> None:
        """``reply`` is now the one the user hears (or is about to)."""
        if self._live is not None and not self._live[1].done():
            self._live[1].cancel()
        self.turns.feed(ReplyStarted(reply.turn_id))
        task.add_done_callback(functools.partial(self._reply_finished, reply))
        self._live = (reply, task)

    def _reply_finished(self, reply: Reply, task: asyncio.Task[None]) -> None:
        self.turns.feed(ReplyEnded(reply.turn_id))
        if reply.completed:
            self.turns_answered += 1

    async def _interrupt(self, tid: int) -> None:
        """Barge-in: stop audio now, tell the client to drop its buffer, cancel and await the reply."""
        self._output.clear()
        self._emit(AudioClear(tid))
        if self._live is not None and self._live[0].turn_id == tid:
            reply, task = self._live
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._live = None
            self._cut = reply
