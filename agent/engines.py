"""The models of the process, loaded once and shared by every session, each behind its role's engine.

An engine takes typed requests from any session and answers on the event loop: ``AsrEngine.transcribe``
returns a future, ``LlmEngine.generate`` and ``TtsEngine.synthesize`` an async stream of outputs. Under
each engine is one ``RoleQueue`` (agent/scheduler.py): priorities, a batch entry point, and cancelled
work dropped before it runs or stopped at its next token or chunk. Cancelling the future, or leaving
the stream's ``async with``, is how a session cancels.

Backends are found by name in ``BACKENDS`` (a setting per role: ``--asr-backend`` ...): a second TTS or
LLM backend is one new module with a ``load(settings, progress)`` function and one line here.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from agent import models
from agent.asr.base import Asr, AsrPurpose, AsrRequest, Transcript
from agent.chunker import ChunkPolicy, ClauseChunker
from agent.config import Settings
from agent.eot.base import EotModel, EotRequest, EotScore
from agent.errors import ConfigError
from agent.llm.base import ChatMessage, GenerationOptions, Llm, LlmOutput, LlmRequest
from agent.scheduler import Job, RoleQueue
from agent.tts.base import Tts, TtsChunk, TtsRequest
from agent.tts.voiced import VoicedTts
from agent.vad.base import VadFrame, VadModel, VadStream
from agent.voices.library import BUILTIN, VoiceLibrary

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# role -> backend name -> "module:function" building it from Settings (imported only when chosen).
BACKENDS: dict[str, dict[str, str]] = {
    "vad": {"silero": "agent.vad.silero:load"},
    "asr": {"faster-whisper": "agent.asr.faster_whisper:load"},
    "llm": {"llama-cpp": "agent.llm.llama_cpp:load"},
    # engines: a voice record names the one it runs on
    "tts": {
        "hibari": "agent.tts.hibari:load",
        "piper": "agent.tts.piper:load",
        "gpt-sovits": "agent.tts.gpt_sovits:load",  # an external server (--tts-gpt-sovits-url)
    },
    "eot": {"smart-turn": "agent.eot.smart_turn:load"},  # and "off": no model, the transcript decides
}


def load_backend(role: str, name: str, settings: Settings, progress: models.ProgressFactory | None) -> Any:
    """Build the backend ``name`` of ``role`` (ConfigError for a name BACKENDS does not know)."""
    known = BACKENDS[role]
    if name not in known:
        raise ConfigError(f"unknown {role} backend {name!r}; known: {', '.join(known)}")
    module, _, function = known[name].partition(":")
    return getattr(importlib.import_module(module), function)(settings, progress)


# -- the loop side of a queue -----------------------------------------------------------------------
def _submit_future(queue: RoleQueue[R], request: R, priority: int) -> asyncio.Future[Any]:
    """Queue ``request``; its single result arrives in the returned future. Cancelling the future
    cancels the job (dropped if queued)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def deliver(item: object) -> None:
        _call_soon(loop, _resolve, future, item, None)

    def finish(error: BaseException | None) -> None:
        # After deliver's result (call_soon keeps the order); without one the job was dropped (the
        # queue closed under it): the future is cancelled, so nobody waits for it forever.
        _call_soon(loop, _resolve, future, _NO_RESULT, error)

    job = Job(request, priority, deliver, finish)
    future.add_done_callback(lambda f: queue.cancel(job) if f.cancelled() else None)
    queue.put(job)
    return future


_NO_RESULT = object()


def _resolve(future: asyncio.Future[Any], value: object, error: BaseException | None) -> None:
    """Settle ``future`` once: with ``error``, else with ``value``, else (no result) cancel it."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    elif value is _NO_RESULT:
        future.cancel()
    else:
        future.set_result(value)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(fn, *args)


_END = object()


class Stream(Generic[T]):
    """The streamed results of one job, as an async iterator. Use it as ``async with``: leaving the
    block (normally, by an error, or by cancellation) cancels the job, which stops at its next chunk.

    ``__anext__`` is cancel-safe: a cancelled wait loses nothing that was not already abandoned."""

    def __init__(self, queue: RoleQueue[Any], request: Any, priority: int) -> None:
        loop = asyncio.get_running_loop()
        self._items: asyncio.Queue[object] = asyncio.Queue()
        self._queue = queue
        self._job: Job[Any] = Job(
            request,
            priority,
            lambda item: _call_soon(loop, self._items.put_nowait, item),
            lambda error: _call_soon(loop, self._items.put_nowait, _END if error is None else _Failed(error)),
        )
        queue.put(self._job)

    def cancel(self) -> None:
        self._queue.cancel(self._job)

    def __aiter__(self) -> Stream[T]:
        return self

    async def __anext__(self) -> T:
        item = await self._items.get()
        if item is _END:
            self._items.put_nowait(_END)  # stays ended
            raise StopAsyncIteration
        if isinstance(item, _Failed):
            raise item.error
        return item  # type: ignore[return-value]

    async def __aenter__(self) -> Stream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


# -- the engines ------------------------------------------------------------------------------------
class VadEngine:
    """VAD windows off the loop: one small job per input frame, in order."""

    def __init__(self, model: VadModel) -> None:
        self.model = model
        self.queue: RoleQueue[tuple[VadStream, Any]] = RoleQueue("vad", self._serve)

    def stream(self) -> VadStream:
        return self.model.stream()

    def process(self, stream: VadStream, pcm16k: Any) -> asyncio.Future[list[VadFrame]]:
        return _submit_future(self.queue, (stream, pcm16k), 0)

    @staticmethod
    def _serve(jobs: list[Job[tuple[VadStream, Any]]]) -> None:
        for job in jobs:
            stream, pcm = job.request
            job.deliver(stream.process(pcm))


class AsrEngine:
    def __init__(self, model: Asr, *, max_batch: int = 1, batch_window_s: float = 0.0) -> None:
        self.model = model
        self.queue: RoleQueue[AsrRequest] = RoleQueue(
            "asr", self._serve, max_batch=max_batch, batch_window_s=batch_window_s
        )

    def transcribe(self, request: AsrRequest) -> asyncio.Future[Transcript]:
        """The request's transcript. Final passes go before overlap passes before partial ones;
        cancelling the future drops a queued request (a running one finishes, its result unused)."""
        return _submit_future(self.queue, request, int(request.purpose))

    def _serve(self, jobs: list[Job[AsrRequest]]) -> None:
        for job, transcript in zip(jobs, self.model.transcribe_batch([j.request for j in jobs]), strict=True):
            job.deliver(transcript)


class EotEngine:
    """End-of-turn scores off the loop; a batch of pauses (several sessions) is one model call."""

    def __init__(self, model: EotModel, *, max_batch: int = 4, nice: int = 0) -> None:
        self.model = model
        self.queue: RoleQueue[EotRequest] = RoleQueue("eot", self._serve, max_batch=max_batch, nice=nice)

    def score(self, request: EotRequest) -> asyncio.Future[EotScore]:
        """P(the turn is complete) for the utterance; cancelling drops a queued request."""
        return _submit_future(self.queue, request, 0)

    def _serve(self, jobs: list[Job[EotRequest]]) -> None:
        for job, score in zip(jobs, self.model.score_batch([j.request for j in jobs]), strict=True):
            job.deliver(score)


@dataclass(frozen=True, slots=True)
class Prefill:
    """Read this prompt into the LLM's cache; generate nothing (agent/llm/base.py: prefill)."""

    request: LlmRequest


# The LLM queue's levels: a reply that has not said its first clause yet, the rest of a reply, a
# prefill (agent/llm/base.py). A reply is served in slices of one clause: at each clause boundary it
# parks if another job at its level or better waits and it has enough said ahead of the listener
# (``slack``) to wait, so with several sessions on one model every reply's first clause comes before
# the rest of the others, and the rests go round in turn, without a reply's audio running dry.
LLM_FIRST, LLM_REST, LLM_PREFILL = 0, 1, 2
LLM_AGE_S = 1.0  # a job waiting this long moves up a level (nothing starves behind new replies)
PARK_SLACK_S = 2.0  # a reply parks only with this much of its speech still ahead of the listener


@dataclass(frozen=True, slots=True)
class Generate:
    """A reply to generate; ``slack()``: seconds of its speech made or written but not yet heard
    (None: it can always wait)."""

    request: LlmRequest
    slack: Callable[[], float] | None = None


@dataclass
class _Generation:
    """A reply between its slices: the model's stream, where its clauses end, and (while parked)
    the model state it needs."""

    outputs: Iterator[LlmOutput]
    chunker: ClauseChunker
    paused: object = None


class LlmEngine:
    def __init__(self, model: Llm) -> None:
        self.model = model
        self.queue: RoleQueue[Generate | Prefill] = RoleQueue(
            "llm", self._serve, age_s=LLM_AGE_S, discard=self._discard
        )

    def generate(self, request: LlmRequest, slack: Callable[[], float] | None = None) -> Stream[LlmOutput]:
        """The reply as a stream of outputs (text deltas). Leaving its ``async with`` stops the
        model before its next token (or drops the request if it has not started). ``slack`` says
        how much of the reply's speech is still ahead of the listener (called from the LLM's
        thread: it must be cheap and thread-safe to read)."""
        return Stream(self.queue, Generate(request, slack), LLM_FIRST)

    def prefill(self, request: LlmRequest) -> asyncio.Future[int]:
        """Read ``request``'s prompt ahead (tokens read come back). Replies go first: a prefill
        stops at its next slice when one is queued (what it read is kept); cancelling drops it."""
        return _submit_future(self.queue, Prefill(request), LLM_PREFILL)

    def _serve(self, jobs: list[Job[Generate | Prefill]]) -> None:
        for job in jobs:
            match job.request:
                case Prefill(request=request):

                    def stop(job: Job[Any] = job) -> bool:
                        return job.cancelled() or self.queue.waiting(LLM_PREFILL - 1)

                    job.deliver(self.model.prefill(request, stop))
                case Generate() as reply:
                    self._reply(job, reply)

    def _reply(self, job: Job[Any], reply: Generate) -> None:
        """Generate until the reply ends or, at a clause boundary, another job should go first."""
        run: _Generation | None = job.parked
        if run is None:
            # Slices end at clause punctuation only: a reply parked after a phrase break (the session's
            # chunker may cut there) would leave its listener in silence mid-sentence.
            chunks = ClauseChunker(ChunkPolicy(first_phrase_words=0))
            run = _Generation(iter(self.model.stream(reply.request, job.cancelled)), chunks)
        else:
            self.model.resume(run.paused)
            run.paused, job.parked = None, None
        for output in run.outputs:
            job.deliver(output)
            if (
                run.chunker.push(output.text)
                and not job.cancelled()
                and (reply.slack is None or reply.slack() >= PARK_SLACK_S)
                and self.queue.waiting(LLM_REST)
            ):
                run.paused = self.model.pause()
                job.park(run, LLM_REST)
                return

    @staticmethod
    def _discard(job: Job[Any]) -> None:
        run: _Generation = job.parked
        close = getattr(run.outputs, "close", None)
        if close is not None:
            close()  # the generator's cleanup runs here, in the worker thread


class TtsEngine:
    def __init__(self, model: Tts) -> None:
        self.model = model
        # A first clause goes before later ones (of any reply); a later one waits at most ~0.4 s for them.
        self.queue: RoleQueue[TtsRequest] = RoleQueue("tts", self._serve, age_s=0.4)

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    def synthesize(self, request: TtsRequest) -> Stream[TtsChunk]:
        """The request's audio as a stream of chunks; a reply's first clause goes before later ones."""
        return Stream(self.queue, request, 0 if request.first else 1)

    def _serve(self, jobs: list[Job[TtsRequest]]) -> None:
        """Each clause's audio, chunk by chunk as it comes; the model polls ``cancelled`` between chunks."""
        for job in jobs:
            for chunk in self.model.stream(job.request, job.cancelled):
                job.deliver(chunk)


@dataclass
class Engines:
    vad: VadEngine
    asr: AsrEngine
    llm: LlmEngine
    tts: TtsEngine
    load_s: dict[str, float]
    eot: EotEngine | None = None  # None: no end-of-turn model (the transcript rule decides alone)

    @classmethod
    def of(
        cls,
        vad: VadModel,
        asr: Asr,
        llm: Llm,
        tts: Tts,
        load_s: dict[str, float] | None = None,
        eot: EotModel | None = None,
    ) -> Engines:
        return cls(
            VadEngine(vad),
            AsrEngine(asr),
            LlmEngine(llm),
            TtsEngine(tts),
            load_s or {},
            None if eot is None else EotEngine(eot),
        )

    @property
    def names(self) -> dict[str, str]:
        names = {
            "vad": self.vad.model.name,
            "asr": self.asr.model.name,
            "llm": self.llm.model.name,
            "tts": self.tts.model.name,
        }
        if self.eot is not None:
            names["eot"] = self.eot.model.name
        return names

    def queues(self) -> list[RoleQueue[Any]]:
        queues: list[RoleQueue[Any]] = [self.vad.queue, self.asr.queue, self.llm.queue, self.tts.queue]
        if self.eot is not None:
            queues.append(self.eot.queue)
        return queues

    def close(self) -> None:
        for queue in self.queues():
            queue.close()


def voice_library(settings: Settings) -> VoiceLibrary:
    """The speaker library: built-in voices whose model is installed, and the enrolled ones."""
    root = Path(settings.tts.voices_dir) if settings.tts.voices_dir else models.home() / "voices"
    return VoiceLibrary(root, tuple(v for v in BUILTIN if models.is_installed(models.CATALOGUE[v.model])))


def load_tts(settings: Settings) -> VoicedTts:
    """The speaker library's voices, each on its engine (``BACKENDS["tts"]``, loaded on first use)."""
    return VoicedTts(
        voice_library(settings),
        lambda engine: load_backend("tts", engine, settings, None),
        default_voice=settings.tts.voice,
    )


def load_asr(settings: Settings, progress: models.ProgressFactory | None = None) -> Asr:
    asr: Asr = load_backend("asr", settings.asr.backend, settings, progress)
    return asr


def load(settings: Settings, progress: models.ProgressFactory | None = None, *, warm: bool = True) -> Engines:
    """Load every model (and warm it up, so the first turn is not the slow one)."""
    load_s: dict[str, float] = {}

    def timed(role: str, fn: Callable[[], R]) -> R:
        t0 = time.perf_counter()
        out = fn()
        load_s[role] = round(time.perf_counter() - t0, 3)
        log.info("loaded %s in %.2f s", role, load_s[role])
        return out

    vad = timed("vad", lambda: load_backend("vad", settings.vad.backend, settings, progress))
    asr = timed("asr", lambda: load_asr(settings, progress))
    llm = timed("llm", lambda: load_backend("llm", settings.llm.backend, settings, progress))
    tts = timed("tts", lambda: load_tts(settings))
    eot: EotModel | None = None
    if settings.eot.backend != "off":
        eot = timed("eot", lambda: load_backend("eot", settings.eot.backend, settings, progress))
    engines = Engines(
        VadEngine(vad),
        AsrEngine(asr, max_batch=settings.asr.max_batch, batch_window_s=settings.asr.batch_window_s),
        LlmEngine(llm),
        TtsEngine(tts),
        load_s,
        None if eot is None else EotEngine(eot, nice=settings.eot.nice),
    )
    if warm:
        timed("warmup", lambda: warm_up(engines, settings))
    return engines


def warm_up(engines: Engines, settings: Settings) -> None:
    """Run each model once, in its own worker thread (through its queue, like any request), so the
    first turn is not the slow one. Never in the loading thread: OpenMP keeps a thread pool per
    calling thread, and llama.cpp warmed in the main thread left a second pool there; libgomp then
    saw more of its threads than CPUs and throttled its spin-waits, and every later decode in the
    LLM's own thread ran at a third of its speed (8-10 tokens/s against 25-30 on 2 cores)."""
    _served(engines.vad.queue, (engines.vad.stream(), np.zeros(1024, np.int16)))
    if engines.eot is not None:
        _served(engines.eot.queue, EotRequest(np.zeros(16000, np.float32)))
    _served(engines.asr.queue, AsrRequest(np.zeros(16000, np.float32), AsrPurpose.FINAL))
    _served(engines.tts.queue, TtsRequest("Hello."))
    # Evaluates the system prompt once: its KV state is then reused by every first turn.
    messages = (ChatMessage("system", settings.llm.system_prompt), ChatMessage("user", "Hi."))
    _served(engines.llm.queue, Generate(LlmRequest(messages, GenerationOptions(max_tokens=1))))


def _served(queue: RoleQueue[R], request: R) -> None:
    """Serve ``request`` on ``queue``'s worker thread and wait for it (a blocking call, for start-up;
    never from the event loop). A failure is raised here."""
    done = threading.Event()
    failed: list[BaseException] = []

    def finish(error: BaseException | None) -> None:
        if error is not None:
            failed.append(error)
        done.set()

    queue.put(Job(request, 0, lambda _: None, finish))
    done.wait()
    if failed:
        raise failed[0]
