"""One conversation: inputs in -> hearing -> turn-taking -> replies -> outputs.

``Session.run()`` owns every task of the conversation in one TaskGroup: the input task (VAD and
turn-taking on each input, in the order the inputs came) and the replies. Model work is not a task:
it is a request to a shared engine (agent/engines.py), a future or a stream the session cancels. A
transport talks to a session through ``push(Input)`` and the outputs it gets (events through
``emit``, audio through its ``AudioOutput``); nothing else.

turn.py decides; this module executes its actions. The speculative pipeline, as a timeline of a pause:
- silence begins (``SilenceOnset``): the final ASR pass starts on the speech so far;
- the transcript is ready (``TranscriptReady``): turn.py sets the endpoint silence from it (short for
  a finished sentence, long for a dangling one) and asks to ``Speculate``: a held reply starts, LLM and
  TTS running while the user is silent, nothing sent, nothing remembered;
- the end-of-turn model scores the pause (``EotScored``) beside the transcript: the two set the endpoint;
- the endpoint (``EndOfTurn``) arms the held reply: it goes out with its first audio (what it made so
  far at once), and the turn machine waits in HELD until then;
- the user resumes (``SpeechResumed`` before the endpoint, ``TurnResumed`` after it while the reply is
  not audible yet): the ASR pass and the held reply are dropped without trace, the turn goes on.
Barge-in is one short path, ``_interrupt``: clear every buffer down to the client, cancel the reply
and wait for it to end; what the user heard stays in memory (agent/heard.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from agent.asr.base import AsrPurpose, Transcript
from agent.audio import INPUT_RATE, Pcm, pcm_to_float
from agent.config import SessionOptions, Settings, TurnPolicy, with_profile
from agent.engines import Engines
from agent.eot.base import EotRequest, EotScore
from agent.errors import LimitError, VoxloopError
from agent.events import (
    Action,
    AudioClear,
    AudioIn,
    CancelIn,
    ClassifyOverlap,
    Commit,
    CommitIn,
    ConfigureIn,
    DtmfIn,
    DtmfReceived,
    EndOfTurn,
    EotScored,
    Error,
    Event,
    Input,
    Interrupt,
    OverlapHeard,
    PauseReply,
    PlaybackIn,
    ReplyAudible,
    ReplyEnded,
    ReplyStarted,
    ResumeReply,
    SessionReady,
    SilenceOnset,
    Speculate,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    StartSpeech,
    StartText,
    TextIn,
    TextTurn,
    TranscriptPartial,
    TranscriptReady,
    TurnResumed,
)
from agent.hearing import Hearing
from agent.io import AudioOutput, EventSink
from agent.llm.base import LlmRequest
from agent.meaning import transcript_reading
from agent.memory import Memory
from agent.reply import Reply, ReplyContext, Timeline
from agent.turn import TurnTaking, UserState

log = logging.getLogger(__name__)


class Outbox:
    """Where a session's events go, with the one stale-turn rule: once the audio of turn N was
    cleared, no event of a turn before N reaches the client (a client drops them too; the server
    never sends them). Session-level events (turn 0) always pass."""

    def __init__(self, emit: EventSink) -> None:
        self._emit = emit
        self.cleared_turn = 0
        self.dropped_stale = 0

    def __call__(self, event: Event) -> None:
        if 0 < event.turn_id < self.cleared_turn:
            self.dropped_stale += 1
            log.debug("dropped a stale %s of turn %d", type(event).__name__, event.turn_id)
            return
        if isinstance(event, AudioClear):
            self.cleared_turn = max(self.cleared_turn, event.turn_id)
        self._emit(event)


@dataclass
class _Pause:
    """The ASR pass of one pause, and the held reply built on it."""

    turn_id: int
    start: int
    end: int
    asr: asyncio.Future[Transcript]
    eot: asyncio.Future[EotScore] | None = None
    eot_at: float | None = None  # when the end-of-turn model's opinion came back
    reply: Reply | None = None
    reply_task: asyncio.Task[None] | None = None

    def matches(self, turn_id: int, start: int, end: int) -> bool:
        return (self.turn_id, self.start, self.end) == (turn_id, start, end)

    def cancel(self) -> None:
        self.asr.cancel()
        if self.eot is not None:
            self.eot.cancel()
        if self.reply_task is not None:
            self.reply_task.cancel()


# What the session's own callbacks put in its inbox, after the inputs they follow.
@dataclass(frozen=True, slots=True)
class _OverlapDone:
    start: int
    end: int
    text: str
    avg_logprob: float | None = None
    tilt_db: float | None = None
    louder_than_echo_s: float | None = None


@dataclass(frozen=True, slots=True)
class _EotDone:
    turn_id: int
    start: int
    end: int
    probability: float


@dataclass(frozen=True, slots=True)
class _AsrDone:
    turn_id: int
    start: int
    end: int
    text: str


_InboxItem = Input | _AsrDone | _EotDone | _OverlapDone


@dataclass
class _Live:
    reply: Reply
    task: asyncio.Task[None]


def _phrases(listed: str) -> frozenset[str]:
    """A comma-separated setting of words and phrases, lower-cased."""
    return frozenset(w.strip().lower() for w in listed.split(",") if w.strip())


class Session:
    """A conversation. Feed it with ``push``; run ``run()`` as a task; cancel that task to end it."""

    def __init__(
        self,
        engines: Engines,
        settings: Settings,
        output: AudioOutput,
        emit: EventSink,
        *,
        session_id: str,
    ) -> None:
        self.engines = engines
        self.settings = settings
        self.session_id = session_id
        self._output = output
        self._emit = Outbox(emit)
        self._base_policy = TurnPolicy(
            threshold=settings.vad.threshold,
            release_threshold=settings.vad.release_threshold,
            min_speech_s=settings.turn.min_speech_s,
            endpoint_silence_s=settings.turn.endpoint_silence_s,
            endpoint_complete_s=settings.turn.endpoint_complete_s,
            endpoint_incomplete_s=settings.turn.endpoint_incomplete_s,
            endpoint_confident_s=settings.turn.endpoint_confident_s,
            endpoint_hold_s=settings.turn.endpoint_hold_s,
            eot_threshold=settings.eot.threshold,
            max_utterance_s=settings.turn.max_utterance_s,
            barge_in_min_speech_s=settings.turn.barge_in_min_speech_s,
            barge_in_confirm_s=settings.turn.barge_in_confirm_s,
            false_interruption_timeout_s=settings.turn.false_interruption_timeout_s,
            wordless_logprob=settings.turn.wordless_logprob,
            backchannels=_phrases(settings.turn.backchannels),
            interrupt_words=_phrases(settings.turn.interrupt_words),
        )
        self.profile = settings.turn.profile
        self.turns = TurnTaking(with_profile(self._base_policy, self.profile))
        self.memory = Memory(
            settings.llm.system_prompt, settings.llm.memory_budget_tokens, engines.llm.model.count_tokens
        )
        self.hearing = Hearing(engines, settings)
        if self.hearing.echo is not None:
            output.set_sent_listener(self.hearing.reference)
        self.configured = False
        # One ordered inbox for audio and control, so "commit" is never processed before the audio
        # sent ahead of it. Only audio is dropped when it is full (oldest first, counted), and the
        # bound is in samples, whatever length the transport's frames have.
        self._inbox: deque[_InboxItem] = deque()
        self._inbox_samples = 0
        self._inbox_max_samples = max(INPUT_RATE // 10, int(settings.audio.input_queue_s * INPUT_RATE))
        self._inbox_ready = asyncio.Event()
        self.dropped_input_frames = 0
        self._tasks: asyncio.TaskGroup | None = None
        self._live: _Live | None = None  # the reply the user hears (or is about to)
        self._cut: Reply | None = None  # the last reply cut off by the user, until the client's word
        self._reply_context = ReplyContext(engines, settings, self.memory, output, self._emit, session_id)
        self._pause: _Pause | None = None
        self._pending_text: dict[int, TextIn] = {}
        self.turns_answered = 0
        self.turns_resumed = 0  # endpoints the user spoke past before the reply was heard
        self._prefilling: asyncio.Future[int] | None = None

    # -- the transport's side ---------------------------------------------------------------------
    def push(self, item: Input) -> None:
        """Queue one input, in order. Never blocks: when the audio in the queue exceeds
        ``input_queue_s``, the oldest audio is dropped (and counted). Raises VoxloopError for an
        input that cannot be accepted (the session goes on)."""
        match item:
            case AudioIn(pcm=pcm):
                while self._inbox_samples + len(pcm) > self._inbox_max_samples and self._drop_oldest_audio():
                    pass
                self._inbox_samples += len(pcm)
            case TextIn(text=text):
                if len(text) > self.settings.tts.max_chars:
                    raise LimitError(
                        f"text of {len(text)} characters; the limit is {self.settings.tts.max_chars}",
                        code="text_too_long",
                    )
                if not text.strip():
                    raise LimitError("empty text", code="empty_text")
                item = TextIn(text.strip(), item.verbatim)
            case _:
                pass
        self._put(item)

    @property
    def inbox_size(self) -> int:
        """Inputs queued and not yet taken by the input task."""
        return len(self._inbox)

    def _drop_oldest_audio(self) -> bool:
        """Drop the oldest queued audio; False when there is none."""
        for i, queued in enumerate(self._inbox):
            if isinstance(queued, AudioIn):
                del self._inbox[i]
                self._inbox_samples -= len(queued.pcm)
                self.dropped_input_frames += 1
                return True
        return False

    async def run(self) -> None:
        """Run until cancelled. Cancelling ends every task of the session and awaits them."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks = tg
                tg.create_task(self._input_loop(), name=f"{self.session_id}-input")
        finally:
            self._tasks = None
            self._drop_pause()
            self.hearing.close()
            if self._prefilling is not None:
                self._prefilling.cancel()

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
            try:
                await self._take(item)
            except VoxloopError as e:  # an input that cannot be applied: reported, the session goes on
                self._emit(Error(self.turns.turn_id, e.code, e.message, e.fatal))

    async def _take(self, item: _InboxItem) -> None:
        match item:
            case AudioIn(pcm=pcm, received_at=received_at):
                self._inbox_samples -= len(pcm)
                await self._on_audio(pcm, received_at)
            case CommitIn():
                await self._feed(Commit())
            case TextIn():
                for action in self.turns.feed(TextTurn()):
                    if isinstance(action, StartText):
                        self._pending_text[action.turn_id] = item
                    await self._act(action)
            case CancelIn():
                if self._live is not None:
                    await self._act(Interrupt(self._live.reply.turn_id))
            case PlaybackIn(turn_id=tid, played_s=played_s):
                self._playback(tid, played_s)
            case DtmfIn(digit=digit):
                self._emit(DtmfReceived(self.turns.turn_id, digit))
            case ConfigureIn(options=options):
                self._configure(options)
            case _OverlapDone(start=start, end=end, text=text) as done:
                log.debug(
                    "%s: over the agent: %r (log-probability %s, tilt %s dB, louder than echo %s s)",
                    self.session_id,
                    text,
                    done.avg_logprob,
                    done.tilt_db,
                    done.louder_than_echo_s,
                )
                agent_text = self._live.reply.said_text if self._live is not None else ""
                heard = OverlapHeard(
                    start, end, text, agent_text, done.avg_logprob, done.tilt_db, done.louder_than_echo_s
                )
                await self._feed(heard)
            case _AsrDone(turn_id=tid, start=start, end=end, text=text):
                await self._feed(TranscriptReady(tid, start, end, transcript_reading(text)))
            case _EotDone(turn_id=tid, start=start, end=end, probability=p):
                await self._feed(EotScored(tid, start, end, p))

    def _configure(self, options: SessionOptions) -> None:
        """Apply per-session options; the first call also readies the session (and its greeting)."""
        if options.profile is not None:
            self.profile = options.profile
            self.turns.policy = with_profile(self._base_policy, options.profile)
        if options.instructions is not None:
            self.memory.system_prompt = options.instructions
        refused: VoxloopError | None = None
        if options.voice is not None:
            try:  # an unknown voice is refused and the session keeps the one it has
                self.engines.tts.model.check_voice(options.voice)
                self._reply_context.voice = options.voice
            except VoxloopError as e:
                refused = e
        if options.echo_cancelled:
            self.hearing.client_cancels_echo()
        if not self.configured:
            self.configured = True
            tts = self.engines.tts.model
            voice = self._reply_context.voice or tts.voices[0]
            self._emit(
                SessionReady(0, self.session_id, 0, 0, self.engines.names, self.profile, voice, tts.voices)
            )
            if options.greeting:
                self.push(TextIn(options.greeting, verbatim=True))
        if refused is not None:
            raise refused

    def _playback(self, turn_id: int, played_s: float) -> None:
        """The client's playback position in ``turn_id``. While the reply plays, it sharpens the
        estimate of what was heard; after a cut, it corrects memory to it. Other turns: stale."""
        self._output.report_played(turn_id, played_s)
        if self._cut is not None and self._cut.turn_id == turn_id:
            text = self._cut.heard.amend(played_s)
            log.debug("%s: turn %d heard up to %.2f s: %r", self.session_id, turn_id, played_s, text)

    async def _feed(self, item: Commit | OverlapHeard | TranscriptReady | EotScored) -> None:
        for action in self.turns.feed(item):
            await self._act(action)

    async def _on_audio(self, pcm: Pcm, received_at: float) -> None:
        for frame in await self.hearing.frames(pcm, received_at):
            for action in self.turns.feed(frame):
                await self._act(action)
        if self.hearing.partial_due(self.turns.state is UserState.SPEAKING):
            partial = self.hearing.start_partial(self.turns.speech_start_sample)
            partial.add_done_callback(functools.partial(self._partial_done, self.turns.turn_id))

    async def _act(self, action: Action) -> None:
        log.debug("%s: %s (state %s)", self.session_id, action, self.turns.state.value)
        match action:
            case StartSpeech(turn_id=tid, start_sample=start):
                self.hearing.speech_started(start)
                self._emit(SpeechStarted(tid, start / INPUT_RATE))
            case Interrupt(turn_id=tid):
                await self._interrupt(tid)
            case SilenceOnset(turn_id=tid, start_sample=start, end_sample=end):
                self._drop_pause()
                if self._prefilling is not None:  # the final pass and the reply need the CPU now
                    self._prefilling.cancel()
                asr = self.hearing.transcribe(start, self.hearing.end, AsrPurpose.FINAL)
                asr.add_done_callback(functools.partial(self._asr_done, tid, start, end))
                self._pause = _Pause(tid, start, end, asr, self._score_pause(tid, start, end))
            case PauseReply():
                self._output.pause()
            case ResumeReply():
                self._output.resume()
            case ClassifyOverlap(start_sample=start, end_sample=end):
                overlap = self.hearing.transcribe(start, self.hearing.tail(end), AsrPurpose.OVERLAP)
                # Measured now, while the canceller still holds the overlap's frames.
                louder = self.hearing.louder_than_echo_s(start, end)
                overlap.add_done_callback(functools.partial(self._overlap_done, start, end, louder))
            case Speculate(turn_id=tid, start_sample=start, end_sample=end):
                self._speculate(tid, start, end)
            case SpeechResumed():
                self._drop_pause()
            case EndOfTurn():
                self._end_of_turn(action)
            case TurnResumed(turn_id=tid):
                await self._void_held(tid)
            case StartText(turn_id=tid):
                text = self._pending_text.pop(tid)
                reply = Reply(self._reply_context, tid, Timeline(time.monotonic()), held=False)
                self._go_live(reply, self._spawn(reply.to_text(text.text, verbatim=text.verbatim), tid))

    # -- model results, back on the loop ---------------------------------------------------------
    def _overlap_done(
        self, start: int, end: int, louder: float | None, future: asyncio.Future[Transcript]
    ) -> None:
        # No words heard (or the pass failed): nothing comes back and the timeout resumes the agent.
        if not future.cancelled() and future.exception() is None:
            heard = future.result()
            tilt = self.hearing.tilt_db(start, end)
            self._put(_OverlapDone(start, end, heard.text, heard.avg_logprob, tilt, louder))

    def _score_pause(self, tid: int, start: int, end: int) -> asyncio.Future[EotScore] | None:
        """Ask the end-of-turn model about the utterance so far (its last 8 s, up to now)."""
        if self.engines.eot is None:
            return None
        window = max(start, self.hearing.end - 8 * INPUT_RATE)
        audio = pcm_to_float(self.hearing.buffer.slice(window, self.hearing.end))
        future = self.engines.eot.score(EotRequest(audio))
        future.add_done_callback(functools.partial(self._eot_done, tid, start, end))
        return future

    def _eot_done(self, tid: int, start: int, end: int, future: asyncio.Future[EotScore]) -> None:
        # A failed model leaves the transcript to decide alone (logged; the turn goes on).
        if future.cancelled():
            return
        if (error := future.exception()) is not None:
            log.warning("%s: end-of-turn model failed: %r", self.session_id, error)
            return
        if self._pause is not None and self._pause.eot is future:
            self._pause.eot_at = time.monotonic()
        self._put(_EotDone(tid, start, end, future.result().probability))

    def _asr_done(self, tid: int, start: int, end: int, future: asyncio.Future[Transcript]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._put(_AsrDone(tid, start, end, future.result().text))

    def _partial_done(self, tid: int, future: asyncio.Future[Transcript]) -> None:
        if future.cancelled():
            return
        if (error := future.exception()) is not None:  # best effort: a failing model shows in the final
            log.warning("%s: partial transcript failed: %r", self.session_id, error)
            return
        text = future.result().text
        if tid == self.turns.turn_id and self.turns.state in (UserState.SPEAKING, UserState.PAUSED) and text:
            self._emit(TranscriptPartial(tid, text))
            self._prefill(text)

    def _prefill(self, partial: str) -> None:
        """Read the words heard so far into the LLM's cache while the user is still speaking; only
        when the LLM is idle (never ahead of any session's reply), the newest partial replacing the
        one before."""
        if not self.settings.llm.prefill_partials or self.engines.llm.queue.pending:
            return
        if self._prefilling is not None:
            self._prefilling.cancel()
        self._prefilling = self.engines.llm.prefill(LlmRequest(self.memory.render(pending_user=partial)))

    # -- turns ------------------------------------------------------------------------------------
    def _speculate(self, tid: int, start: int, end: int) -> None:
        pause = self._pause
        if not self.settings.turn.speculative_reply or pause is None or not pause.matches(tid, start, end):
            return
        if pause.reply is None and any(c.isalnum() for c in pause.asr.result().text):
            timeline = Timeline(self.hearing.arrival_of(end))
            pause.reply = Reply(self._reply_context, tid, timeline, held=True)
            pause.reply_task = self._spawn(pause.reply.to_speech(pause.asr), tid)

    def _drop_pause(self) -> None:
        """The pause's ASR pass and held reply are void: nothing of them reached the client or memory."""
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None

    def _end_of_turn(self, action: EndOfTurn) -> None:
        tid, start, end, reason = action.turn_id, action.start_sample, action.end_sample, action.reason
        endpoint_at = time.monotonic()
        ending: list[Event] = [SpeechStopped(tid, end / INPUT_RATE, reason)]
        if reason == "max_length":
            limit = self.settings.turn.max_utterance_s
            message = f"the utterance reached {limit:g} s; answering what was said"
            ending.append(Error(tid, "utterance_too_long", message))
        self.hearing.cancel_partial()
        pause, self._pause = self._pause, None
        origin = self.hearing.arrival_of(end)
        acoustic_at = pause.eot_at if pause is not None and pause.matches(tid, start, end) else None
        if pause is not None and pause.matches(tid, start, end) and pause.reply is not None:
            assert pause.reply_task is not None
            reply, task = pause.reply, pause.reply_task
            if pause.eot is not None and not pause.eot.done():
                pause.eot.cancel()  # the turn is decided: its score is no longer needed
        else:
            if pause is not None and pause.matches(tid, start, end):
                transcript = pause.asr
                if pause.eot is not None:
                    pause.eot.cancel()
            else:
                if pause is not None:
                    pause.cancel()
                transcript = self.hearing.transcribe(start, self.hearing.tail(end), AsrPurpose.FINAL)
            reply = Reply(self._reply_context, tid, Timeline(origin), held=True)
            task = self._spawn(reply.to_speech(transcript), tid)
        reply.timeline.mark("endpoint", endpoint_at)
        if acoustic_at is not None:  # the opinion's arrival, on the timeline's clock
            reply.timeline.endpointing["acoustic_ms"] = round(
                (acoustic_at - reply.timeline.origin) * 1000.0, 1
            )
        reply.timeline.endpointing.update(
            reason=reason,
            transcript=action.transcript,
            acoustic=None if action.acoustic is None else round(action.acoustic, 3),
            endpoint_ms=round(action.endpoint_s * 1000.0),
        )
        self._go_live(reply, task)
        if reason == "silence":  # out with its first audio; until then the user may go on
            reply.release_when_audible(ending, functools.partial(self._audible, tid))
        else:
            for event in ending:
                self._emit(event)
            reply.release()

    def _audible(self, tid: int) -> None:
        self.turns.feed(ReplyAudible(tid))

    async def _void_held(self, tid: int) -> None:
        """The user went on after the endpoint, before the reply was heard: drop the reply without
        trace (it is still held: nothing of it reached the client or memory)."""
        live = self._live
        if live is not None and live.reply.turn_id == tid and live.reply.held:
            log.debug("%s: turn %d resumed after its endpoint; held reply void", self.session_id, tid)
            live.task.cancel()
            await asyncio.wait([live.task])
            self._live = None
            self.turns_resumed += 1

    # -- replies ----------------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None], tid: int) -> asyncio.Task[None]:
        if self._tasks is None:
            coro.close()
            raise RuntimeError("a session acts only inside run()")
        return self._tasks.create_task(coro, name=f"{self.session_id}-reply-{tid}")

    def _go_live(self, reply: Reply, task: asyncio.Task[None]) -> None:
        """``reply`` is now the one the user hears (or is about to). A reply still live before it
        (a text turn over a spoken one) is cut: turn.py already asked to interrupt it."""
        if self._live is not None and not self._live.task.done():
            self._live.task.cancel()
        self.turns.feed(ReplyStarted(reply.turn_id))
        self.hearing.reply_started()
        task.add_done_callback(functools.partial(self._reply_finished, reply))
        self._live = _Live(reply, task)

    def _reply_finished(self, reply: Reply, task: asyncio.Task[None]) -> None:
        self.turns.feed(ReplyEnded(reply.turn_id))
        if reply.completed:
            self.turns_answered += 1

    async def _interrupt(self, tid: int) -> None:
        """Barge-in: stop the agent's audio now, everywhere it is buffered (the playout queue and
        the transport's own: a WebRTC track, a phone provider's buffer, the client's player through
        ``audio.clear``), then cancel the reply and wait until it has ended (its models stop at the
        next token or chunk; memory keeps what was heard)."""
        self._output.clear()
        self._emit(AudioClear(tid))
        live = self._live
        if live is not None and live.reply.turn_id == tid:
            live.task.cancel()
            await asyncio.wait([live.task])  # never swallows this task's own cancellation
            self._live = None
            self._cut = live.reply
