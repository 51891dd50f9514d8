"""One agent reply: transcript (or text) -> LLM stream -> clauses -> TTS stream -> audio out.

A reply is either live (its events and audio go out as they are made) or **held**: started
speculatively while the user is silent but the turn is not over. A held reply writes nothing to the
client and nothing to memory; ``release()`` sends what it has made so far at once and lets it go on
live; cancelling it before release leaves no trace anywhere. At an endpoint on silence the session
arms it (``release_when_audible``): it goes out with its first audio (or when it ends without any), so
until then the user may still go on and the reply is voided unheard.

Memory: the user's words are committed when the reply is released (or at once for a live reply); the
assistant's words when the reply ends, through its ``Heard`` (agent/heard.py): all of them, or up to
what the user heard if it was interrupted.

Cancelling the reply's task is the barge-in path: the LLM stream and the TTS stream it is reading
are left by their ``async with``, which stops each model at its next token or chunk (or drops the
request if it has not started): a cut reply frees the models at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.asr.base import Transcript
from agent.audio import AudioChunk, float_to_pcm
from agent.chunker import ClauseChunker, ReplyGuard, ReplyLimits
from agent.config import Settings
from agent.engines import Engines
from agent.errors import StageError, VoxloopError
from agent.events import (
    Error,
    Event,
    ResponseAudioDone,
    ResponseAudioStarted,
    ResponseDone,
    ResponseStarted,
    ResponseTextDelta,
    TranscriptFinal,
    TurnMetrics,
)
from agent.heard import Heard
from agent.io import AudioOutput, EventSink
from agent.llm.base import GenerationOptions, LlmRequest, TextDelta
from agent.memory import Memory
from agent.tts.base import TtsOptions, TtsRequest, WordTiming, pause_after, shift_words, speech_bounds

log = logging.getLogger(__name__)

# A first clause may end at a phrase break (agent/chunker.py) only while the model writes at least this
# fast: the rest of the sentence (~5-8 tokens) must be written and synthesized before the phrase has
# been said (~1.2-2 s). Four sessions sharing two cores get 4-8 tokens/s each, and there a phrase break
# left 0.1-1.9 s of silence inside the sentence in 12-20 turns of 40 (docs/benchmarks.md).
PHRASE_BREAK_MIN_TOKENS_PER_S = 10.0
SECONDS_PER_WORD = 0.4  # speech not synthesized yet, estimated (hibari speaks ~2.5-3 words a second)


def writes_fast_enough(deltas: int, elapsed_s: float) -> bool:
    """Whether a model that wrote ``deltas`` tokens in ``elapsed_s`` since its first one writes fast
    enough for a phrase break (``PHRASE_BREAK_MIN_TOKENS_PER_S``)."""
    return elapsed_s <= 0.0 or (deltas - 1) / elapsed_s >= PHRASE_BREAK_MIN_TOKENS_PER_S


@dataclass
class Timeline:
    """Monotonic stamps of one turn, reported relative to ``origin`` (the last speech sample's arrival)."""

    origin: float
    stamps: dict[str, float] = field(default_factory=dict)
    durations_ms: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str, at: float | None = None) -> None:
        self.stamps.setdefault(stage, time.monotonic() if at is None else at)

    endpointing: dict[str, Any] = field(default_factory=dict)

    def metrics(self, turn_id: int) -> TurnMetrics:
        timeline = {k: round((v - self.origin) * 1000.0, 1) for k, v in self.stamps.items()}
        return TurnMetrics(
            turn_id, {"speech_end": 0.0, **timeline}, dict(self.durations_ms), dict(self.endpointing)
        )


@dataclass
class ReplyContext:
    """What a reply needs from its session (``voice`` follows the session's options)."""

    engines: Engines
    settings: Settings
    memory: Memory
    output: AudioOutput
    emit: EventSink
    session_id: str
    voice: str | None = None


class Reply:
    def __init__(self, ctx: ReplyContext, turn_id: int, timeline: Timeline, *, held: bool) -> None:
        self.ctx = ctx
        self.turn_id = turn_id
        self.timeline = timeline
        self.held = held
        self.released = asyncio.Event()
        if not held:
            self.released.set()
        self._held_events: list[Event] = []
        self._held_audio: list[AudioChunk] = []
        self._user_text: str | None = None  # committed to memory on release
        self._on_audible: Callable[[], None] | None = None  # armed: release with the first audio
        self._finished = False  # to_speech/to_text returned (done or failed, not cancelled)
        self.heard = Heard(ctx.memory)
        self.completed = False
        self._words_unspoken = 0  # words of admitted clauses not synthesized yet

    @property
    def said_text(self) -> str:
        """Everything synthesized so far (what the user hears or is about to)."""
        return self.heard.said_text

    # -- hold / release ---------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        if self.held:
            self._held_events.append(event)
        else:
            self.ctx.emit(event)

    def push(self, chunk: AudioChunk) -> None:
        if self.held and self._on_audible is not None:
            self._audible()
        if self.held:
            self._held_audio.append(chunk)
        else:
            self.ctx.output.push(self.turn_id, chunk)

    def release_when_audible(self, first: list[Event], on_audible: Callable[[], None]) -> None:
        """The turn ended on silence: go out with the first audio (``first`` ahead of everything,
        e.g. the speech.stopped the turn ended with), or at the end of a reply that has none; then
        call ``on_audible``. Until then the reply stays void-able without trace."""
        if not self.held:
            return
        self._held_events[:0] = first
        self._on_audible = on_audible
        if self._held_audio or self._finished:
            self._audible()

    def _audible(self) -> None:
        on_audible, self._on_audible = self._on_audible, None
        self.timeline.mark("released")
        self.release()
        if on_audible is not None:
            on_audible()

    def release(self) -> None:
        """The turn is over: send everything made so far, in order, and go on live."""
        if not self.held:
            return
        self.held = False
        self._commit_user()
        for event in self._held_events:
            self.ctx.emit(event)
        for chunk in self._held_audio:
            self.ctx.output.push(self.turn_id, chunk)
        self._held_events.clear()
        self._held_audio.clear()
        self.released.set()

    def _commit_user(self) -> None:
        if self._user_text is not None and not self.held:
            self.heard.user_message = self.ctx.memory.add_user(self._user_text)
            self._user_text = None

    # -- the reply --------------------------------------------------------------------------------
    async def to_speech(self, transcript_pass: asyncio.Future[Transcript]) -> None:
        """Answer what the ASR pass hears. Errors become error events; cancelling is the barge-in path."""
        try:
            try:
                transcript = await transcript_pass
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a model that fails mid-turn: report it, keep the session
                log.exception("%s: ASR failed", self.ctx.session_id)
                raise _stage_error("asr", e) from e
            self.timeline.mark("asr_final")
            self.timeline.durations_ms["asr"] = round(transcript.elapsed_s * 1000.0, 1)
            self.emit(TranscriptFinal(self.turn_id, transcript.text, round(transcript.audio_s, 3)))
            if not any(c.isalnum() for c in transcript.text):
                self.emit(ResponseDone(self.turn_id, "", interrupted=False))
                self.emit(self.timeline.metrics(self.turn_id))
                self.completed = True
            else:
                self._user_text = transcript.text
                self._commit_user()
                await self._respond(llm=True, text=None)
        except VoxloopError as e:
            self.emit(Error(self.turn_id, e.code, e.message, e.fatal))
        self._ended_unheard()

    def _ended_unheard(self) -> None:
        """The reply is over; an armed one that never made audio goes out now (its events)."""
        self._finished = True
        if self._on_audible is not None:
            self._audible()

    async def to_text(self, text: str, *, verbatim: bool) -> None:
        """Answer a typed message (``verbatim``: say ``text`` as it is)."""
        try:
            if not verbatim:
                self._user_text = text
                self._commit_user()
            await self._respond(llm=not verbatim, text=text if verbatim else None)
        except VoxloopError as e:
            self.emit(Error(self.turn_id, e.code, e.message, e.fatal))
        self._ended_unheard()

    async def _respond(self, *, llm: bool, text: str | None) -> None:
        tid, output = self.turn_id, self.ctx.output
        self.emit(ResponseStarted(tid))
        clauses: asyncio.Queue[str | None] = asyncio.Queue()
        try:
            try:
                async with asyncio.TaskGroup() as tg:
                    if llm:
                        tg.create_task(self._generate(clauses))
                    else:
                        chunker = ClauseChunker()
                        for c in [*chunker.push(text or ""), *chunker.flush()]:
                            clauses.put_nowait(c)
                        clauses.put_nowait(None)
                    tg.create_task(self._synthesize(clauses))
            except ExceptionGroup as group:
                raise _first_error(group) from None
            if self._on_audible is not None:  # armed, and no audio came at all: out it goes now
                self._audible()
            await self.released.wait()
            output.end_turn(tid)
            sent_s = await output.wait_done(tid)
            # wait_done returns when the last frame left; the listener hears it up to lead_s later.
            await asyncio.sleep(self.ctx.settings.audio.playout_lead_s)
            full = self.heard.finished(sent_s)
            self.emit(ResponseAudioDone(tid, round(sent_s, 3)))
            self.emit(ResponseDone(tid, full, interrupted=False))
            started = output.first_sent_at(tid)
            if started is not None:
                self.timeline.mark("audio_first_sent", started)
            self.emit(self.timeline.metrics(tid))
            self.completed = True
        except asyncio.CancelledError:
            if not self.held:
                heard = self.heard.interrupted(output.played_s(tid), output.sent_s(tid))
                self.ctx.emit(ResponseDone(tid, heard, interrupted=True))
            raise
        finally:
            output.forget(tid)

    async def _generate(self, clauses: asyncio.Queue[str | None]) -> None:
        llm = self.ctx.settings.llm
        request = LlmRequest(
            self.ctx.memory.render(pending_user=self._user_text),
            GenerationOptions(llm.max_reply_tokens, llm.temperature, llm.repeat_penalty),
        )
        started = time.perf_counter()
        chunker = ClauseChunker()
        guard = ReplyGuard(ReplyLimits(llm.max_reply_sentences, llm.max_reply_words))
        deltas, first_at = 0, 0.0

        def admit(found: list[str]) -> None:
            for clause in found:
                if (spoken := guard.admit(clause)) is not None:
                    self._words_unspoken += len(spoken.split())
                    clauses.put_nowait(spoken)

        try:
            async with self.ctx.engines.llm.generate(request, self._speech_ahead_s) as stream:
                try:
                    async for output in stream:
                        match output:
                            case TextDelta(text=delta):
                                self.timeline.mark("llm_first_token")
                                self.emit(ResponseTextDelta(self.turn_id, delta))
                                now = time.perf_counter()
                                deltas, first_at = deltas + 1, first_at or now
                                admit(chunker.push(delta, writes_fast_enough(deltas, now - first_at)))
                        if guard.stopped is not None:  # a loop, or enough said: the model stops now
                            log.info("%s: reply ended early (%s)", self.ctx.session_id, guard.stopped)
                            break
                except Exception as e:
                    log.exception("%s: LLM failed", self.ctx.session_id)
                    raise _stage_error("llm", e) from e
            self.timeline.durations_ms["llm"] = round((time.perf_counter() - started) * 1000.0, 1)
            admit(chunker.flush())
        finally:
            clauses.put_nowait(None)

    def _speech_ahead_s(self) -> float:
        """Seconds of this reply the listener has not heard yet: the audio made, and the text written
        but not synthesized yet (at ~0.4 s a word), less what has played. Read from the LLM's thread
        (plain reads of numbers this task writes: a stale value only moves a slice boundary)."""
        if self.held:
            return float("inf")  # nobody is listening yet
        made = self.heard.duration_s + SECONDS_PER_WORD * self._words_unspoken
        return made - self.ctx.output.played_s(self.turn_id)

    async def _synthesize(self, clauses: asyncio.Queue[str | None]) -> None:
        tts = self.ctx.engines.tts
        options = TtsOptions(self.ctx.settings.tts.speed)
        tts_ms = 0.0
        first = True
        while (clause := await clauses.get()) is not None:
            self.timeline.mark("first_clause")
            started = time.perf_counter()
            parts = []
            words: list[WordTiming] | None = []  # None once a chunk comes without timings
            made_s = 0.0  # audio of this clause so far: where the next chunk's word timings start
            async with tts.synthesize(TtsRequest(clause, self.ctx.voice, options, first=first)) as stream:
                try:
                    async for chunk in stream:
                        parts.append(chunk.audio)
                        if words is not None and chunk.words is not None:
                            words += shift_words(list(chunk.words), made_s, float("inf"))
                        else:
                            words = None
                        made_s += len(chunk.audio) / chunk.sample_rate
                except VoxloopError:
                    raise
                except Exception as e:
                    log.exception("%s: TTS failed", self.ctx.session_id)
                    raise _stage_error("tts", e) from e
            first = False
            tts_ms += (time.perf_counter() - started) * 1000.0
            self.timeline.mark("tts_first_audio")
            audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
            start, end = speech_bounds(audio, tts.sample_rate, tail_s=pause_after(clause))
            audio = audio[start:end]
            if len(audio) == 0:
                continue
            if not self.heard.clauses:
                self.emit(ResponseAudioStarted(self.turn_id, tts.sample_rate))
            duration_s = len(audio) / tts.sample_rate
            timings = None if not words else shift_words(words, -start / tts.sample_rate, duration_s)
            self.heard.spoke(clause, duration_s, timings)
            self._words_unspoken = max(0, self._words_unspoken - len(clause.split()))
            self.push(AudioChunk(float_to_pcm(audio), tts.sample_rate))
        self.timeline.durations_ms["tts"] = round(tts_ms, 1)


def _stage_error(stage: str, e: Exception) -> VoxloopError:
    return StageError(f"the {stage} model failed: {type(e).__name__}: {e}", code=f"{stage}_failed")


def _first_error(group: ExceptionGroup) -> VoxloopError:
    """The error a client should see from a failed reply pipeline (the first one raised)."""
    for e in group.exceptions:
        if isinstance(e, VoxloopError):
            return e
    log.error("reply pipeline failed", exc_info=group)
    return StageError(f"internal error: {group.exceptions[0]!r}", code="internal_error")
