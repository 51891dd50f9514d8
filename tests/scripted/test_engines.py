"""The request-driven engines on a real loop and real worker threads, with fake models: priorities,
cancellation before and during the work, batches, and errors routed to the request that caused them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest

from agent.asr.base import AsrPurpose, AsrRequest, Transcript
from agent.engines import LLM_AGE_S, AsrEngine, LlmEngine
from agent.llm.base import ChatMessage, LlmOutput, LlmRequest, TextDelta


class GatedAsr:
    """Records what it transcribes (by the audio's first sample) and blocks while ``gate`` is shut."""

    name = "gated-asr"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.served: list[int] = []
        self.batches: list[int] = []

    def transcribe(self, audio: np.ndarray, *, final: bool) -> Transcript:
        raise NotImplementedError

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[Transcript]:
        self.started.set()
        self.gate.wait(5)
        self.batches.append(len(requests))
        out = []
        for r in requests:
            tag = int(r.audio[0])
            if tag < 0:
                raise RuntimeError(f"request {tag} cannot be transcribed")
            self.served.append(tag)
            out.append(Transcript(f"t{tag}", "en", 0.1, 0.0))
        return out


def request(tag: int, purpose: AsrPurpose) -> AsrRequest:
    return AsrRequest(np.full(16, tag, np.float32), purpose)


async def test_a_final_pass_goes_before_queued_partials_and_a_cancelled_partial_never_runs() -> None:
    asr = GatedAsr()
    engine = AsrEngine(asr)
    try:
        busy = engine.transcribe(request(0, AsrPurpose.PARTIAL))  # running: the worker is taken
        await asyncio.to_thread(asr.started.wait, 5)
        p1 = engine.transcribe(request(1, AsrPurpose.PARTIAL))
        p2 = engine.transcribe(request(2, AsrPurpose.PARTIAL))
        overlap = engine.transcribe(request(3, AsrPurpose.OVERLAP))
        final = engine.transcribe(request(4, AsrPurpose.FINAL))
        p2.cancel()
        await asyncio.sleep(0)  # the cancel callback runs on the loop
        asr.gate.set()
        results = await asyncio.gather(busy, p1, overlap, final)
        assert [r.text for r in results] == ["t0", "t1", "t3", "t4"]
        assert asr.served == [0, 4, 3, 1]  # final, then overlap, then the partial that was first in line
        assert 2 not in asr.served and engine.queue.dropped == 1
        async with asyncio.timeout(1):  # the worker marks the batch done just after its last result
            while engine.queue.pending:  # noqa: ASYNC110 - polling a thread's counter
                await asyncio.sleep(0.001)
    finally:
        engine.queue.close()


async def test_a_batch_takes_what_is_queued_and_an_error_reaches_only_its_own_requests() -> None:
    asr = GatedAsr()
    engine = AsrEngine(asr, max_batch=4)
    try:
        first = engine.transcribe(request(0, AsrPurpose.FINAL))
        await asyncio.to_thread(asr.started.wait, 5)
        queued = [engine.transcribe(request(i, AsrPurpose.FINAL)) for i in (1, 2, 3)]
        asr.gate.set()
        assert (await first).text == "t0"
        assert [(await q).text for q in queued] == ["t1", "t2", "t3"]
        assert asr.batches == [1, 3]  # the first ran alone; the three queued behind it ran together
        bad = engine.transcribe(request(-1, AsrPurpose.FINAL))
        with pytest.raises(RuntimeError, match="cannot be transcribed"):
            await bad
        assert (await engine.transcribe(request(5, AsrPurpose.FINAL))).text == "t5"  # still serving
    finally:
        engine.queue.close()


class CountingLlm:
    """Yields one token every 10 ms, up to ``limit``, and counts the tokens it made."""

    name = "counting-llm"

    def __init__(self, limit: int = 500) -> None:
        self.limit = limit
        self.tokens = 0
        self.stopped = threading.Event()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def pause(self) -> object:
        return None

    def resume(self, paused: object) -> None:
        pass

    def stream(self, request: LlmRequest, cancelled: Callable[[], bool]) -> Iterator[LlmOutput]:
        try:
            for i in range(self.limit):
                if cancelled():
                    return
                threading.Event().wait(0.01)
                self.tokens += 1
                yield TextDelta(f" w{i}")
        finally:
            self.stopped.set()


async def test_leaving_a_generation_stops_the_model_within_a_token_and_frees_it() -> None:
    llm = CountingLlm()
    engine = LlmEngine(llm)
    ask = LlmRequest((ChatMessage("user", "talk"),))
    try:
        seen = 0
        async with engine.generate(ask) as stream:
            async for _ in stream:
                seen += 1
                if seen == 5:
                    break
        assert await asyncio.to_thread(llm.stopped.wait, 1.0)
        made = llm.tokens
        assert 5 <= made <= 7  # stopped within one token of the cancel (plus the one being made)
        # The model is free: the next request is served, and the abandoned one made nothing more.
        llm.stopped.clear()
        async with engine.generate(ask) as stream:
            assert await anext(stream) == TextDelta(" w0")
        assert await asyncio.to_thread(llm.stopped.wait, 1.0)
        assert made + 1 <= llm.tokens <= made + 3
    finally:
        engine.queue.close()


async def test_a_generation_cancelled_while_queued_never_starts() -> None:
    llm = CountingLlm(limit=30)
    engine = LlmEngine(llm)
    ask = LlmRequest((ChatMessage("user", "talk"),))
    try:
        running = engine.generate(ask)
        waiting = engine.generate(ask)
        waiting.cancel()
        assert [d.text async for d in running][-1] == " w29"
        with pytest.raises(StopAsyncIteration):
            await anext(waiting)
        assert llm.tokens == 30 and engine.queue.dropped == 1
    finally:
        engine.queue.close()


async def test_a_request_dropped_by_a_closing_queue_is_cancelled_not_left_waiting() -> None:
    asr = GatedAsr()
    engine = AsrEngine(asr)
    busy = engine.transcribe(request(0, AsrPurpose.FINAL))
    await asyncio.to_thread(asr.started.wait, 5)
    queued = engine.transcribe(request(1, AsrPurpose.FINAL))
    engine.queue.close()  # drops the queued request
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(2):
            await queued
    asr.gate.set()
    assert (await busy).text == "t0"  # the one already running still finishes


class ClauseLlm:
    """Each reply is ``clauses`` clauses of five tokens ("r<tag> c<k> w<i>", a comma after the
    last), one token per ``token_s``; records (tag, clause) per token in the order made, and what
    it was asked to pause and resume. Its 'state' is the tag of the reply being generated: a
    reply resumed with another's state raises."""

    name = "clause-llm"

    def __init__(self, clauses: int = 4, token_s: float = 0.005) -> None:
        self.clauses = clauses
        self.token_s = token_s
        self.made: list[tuple[str, int]] = []
        self.current = ""
        self.resumed: list[object] = []
        self.prefill_slices = 0
        self.closed: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def prefill(self, request: LlmRequest, cancelled: Callable[[], bool]) -> int:
        read = 0
        for _ in range(50):  # 50 slices of 16 tokens, 20 ms each, unless told to stop
            if cancelled():
                break
            threading.Event().wait(0.02)
            self.prefill_slices += 1
            read += 16
        return read

    def pause(self) -> object:
        return self.current

    def resume(self, paused: object) -> None:
        self.resumed.append(paused)
        self.current = str(paused)

    def stream(self, request: LlmRequest, cancelled: Callable[[], bool]) -> Iterator[LlmOutput]:
        tag = request.messages[-1].content
        self.current = tag
        try:
            for k in range(self.clauses):
                for i in range(5):
                    if cancelled():
                        return
                    threading.Event().wait(self.token_s)
                    if self.current != tag:
                        raise AssertionError(f"reply {tag} resumed on the state of {self.current}")
                    self.made.append((tag, k))
                    yield TextDelta(f" {tag}c{k}w{i}" + ("," if i == 4 else ""))
        finally:
            self.closed.append(tag)


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.002)):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise TimeoutError("condition not met")


def ask(tag: str) -> LlmRequest:
    return LlmRequest((ChatMessage("user", tag),))


async def _collect(engine: LlmEngine, tag: str, into: list[str]) -> None:
    async with engine.generate(ask(tag)) as stream:
        async for delta in stream:
            into.append(delta.text)


async def test_a_second_reply_says_its_first_clause_before_the_rest_of_the_first_is_made() -> None:
    llm = ClauseLlm(clauses=6)
    engine = LlmEngine(llm)
    try:
        a: list[str] = []
        first = asyncio.create_task(_collect(engine, "A", a))
        await _until(lambda: len(a) >= 2)  # A is generating its first clause
        await _collect(engine, "B", [])
        await first
        order = llm.made
        b_first_done = order.index(("B", 0)) + 4
        assert ("A", 5) in order[b_first_done:]  # the rest of A came after B's first clause
        assert order[:5] == [("A", 0)] * 5  # A's first clause was not cut
        assert "A" in llm.resumed  # A went on from its own state
        assert len(a) == 30 and a[-1] == " Ac5w4,"  # all of A, in order
        assert engine.queue.parks >= 1
    finally:
        engine.queue.close()


async def test_replies_take_turns_clause_by_clause_once_their_first_clauses_are_out() -> None:
    llm = ClauseLlm(clauses=4)
    engine = LlmEngine(llm)
    try:
        await asyncio.gather(*(_collect(engine, tag, []) for tag in "ABC"))
        made = llm.made
        # A clause is known to be over at the next token (the space after its comma), so each slice
        # is a clause and one token.
        done = {c: max(i for i, m in enumerate(made) if m == c) for c in set(made)}
        assert max(done[(t, 0)] for t in "ABC") < min(done[(t, 1)] for t in "ABC")  # first clauses first
        runs = [m[0] for i, m in enumerate(made) if i == 0 or made[i - 1][0] != m[0]]
        assert runs[:6] == ["A", "B", "C", "A", "B", "C"]  # then each in turn
        assert sorted(llm.closed) == ["A", "B", "C"]
    finally:
        engine.queue.close()


async def test_a_parked_reply_is_not_starved_by_a_stream_of_new_replies() -> None:
    llm = ClauseLlm(clauses=3, token_s=0.004)
    engine = LlmEngine(llm)
    loop = asyncio.get_running_loop()
    try:
        a: list[float] = []

        async def reply_a() -> None:
            async with engine.generate(ask("A")) as stream:
                async for _ in stream:
                    a.append(loop.time())

        first = asyncio.create_task(reply_a())
        await _until(lambda: bool(a))
        newcomers = []
        for n in range(150):  # a new reply every 20 ms for 3 s, each made in ~60 ms: always one waiting
            newcomers.append(asyncio.create_task(_collect(engine, f"N{n}", [])))
            await asyncio.sleep(0.02)
            if first.done():
                break
        assert first.done(), "reply A never finished while new replies kept coming"
        gaps = [t1 - t0 for t0, t1 in zip(a, a[1:], strict=False)]
        assert max(gaps) < LLM_AGE_S + 1.0  # it waited about one aging step, not until the others ended
        for task in newcomers:
            task.cancel()
        await asyncio.gather(*newcomers, return_exceptions=True)
    finally:
        engine.queue.close()


async def test_a_prefill_stops_at_its_next_slice_when_a_reply_is_queued() -> None:
    llm = ClauseLlm(clauses=1)
    engine = LlmEngine(llm)
    try:
        prefill = engine.prefill(ask("P"))
        await _until(lambda: llm.prefill_slices >= 2)
        started = asyncio.get_running_loop().time()
        await _collect(engine, "A", [])
        assert asyncio.get_running_loop().time() - started < 0.5  # not behind all 50 slices (1 s)
        assert 16 <= await prefill < 50 * 16  # what it read was kept and counted
    finally:
        engine.queue.close()


async def test_leaving_a_parked_reply_closes_its_generation_in_the_worker() -> None:
    llm = ClauseLlm(clauses=8, token_s=0.01)
    engine = LlmEngine(llm)
    try:
        a = engine.generate(ask("A"))
        await anext(a)
        b = asyncio.create_task(_collect(engine, "B", []))
        await _until(lambda: engine.queue.parks > 0)  # A parked for B
        await a.__aexit__(None, None, None)  # the session leaves A while it is parked
        await b
        for _ in range(100):
            if "A" in llm.closed:
                break
            await asyncio.sleep(0.01)
        assert llm.closed == ["B", "A"] or sorted(llm.closed) == ["A", "B"]
        assert ("A", 7) not in llm.made  # A never went on
    finally:
        engine.queue.close()


async def test_a_reply_whose_listener_is_about_to_run_out_of_speech_does_not_park() -> None:
    """Slack: a reply parks at a clause boundary only with enough of its speech still ahead of the
    listener; one about to run dry goes on, the waiting reply's first clause comes after it."""
    from agent.engines import PARK_SLACK_S

    llm = ClauseLlm(clauses=4)
    engine = LlmEngine(llm)
    try:
        a: list[str] = []

        async def reply_a() -> None:
            async with engine.generate(ask("A"), slack=lambda: PARK_SLACK_S / 2) as stream:
                async for delta in stream:
                    a.append(delta.text)

        first = asyncio.create_task(reply_a())
        await _until(lambda: bool(a))
        await _collect(engine, "B", [])
        await first
        assert engine.queue.parks == 0
        assert llm.made.index(("B", 0)) == 20  # all of A first
    finally:
        engine.queue.close()


def test_every_model_is_warmed_in_its_own_worker_thread_not_the_loading_one() -> None:
    """OpenMP keeps a thread pool per calling thread: a model first run in the main thread and then
    served from its worker leaves two pools, and libgomp's throttled spin-waits then cut llama.cpp's
    decode speed to a third on 2 cores. Warm-up goes through each role's queue."""
    from agent.config import Settings
    from agent.engines import warm_up
    from tests.scripted.fakes import FakeEot, fake_engines

    engines = fake_engines(FakeEot())
    seen: dict[str, list[str]] = {}

    def record(role: str, fn: Callable[..., object]) -> Callable[..., object]:
        def wrapped(*args: object, **kwargs: object) -> object:
            seen.setdefault(role, []).append(threading.current_thread().name)
            return fn(*args, **kwargs)

        return wrapped

    try:
        vad_stream = engines.vad.model.stream
        engines.vad.model.stream = lambda: _recording_stream(vad_stream(), record)  # type: ignore[method-assign]
        engines.asr.model.transcribe_batch = record("asr", engines.asr.model.transcribe_batch)  # type: ignore[method-assign]
        engines.llm.model.stream = record("llm", engines.llm.model.stream)  # type: ignore[method-assign]
        engines.tts.model.stream = record("tts", engines.tts.model.stream)  # type: ignore[method-assign]
        assert engines.eot is not None
        engines.eot.model.score_batch = record("eot", engines.eot.model.score_batch)  # type: ignore[method-assign]
        warm_up(engines, Settings())
    finally:
        engines.close()
    assert seen == {role: [f"voxloop-{role}"] for role in ("vad", "asr", "llm", "tts", "eot")}


def _recording_stream(
    stream: object, record: Callable[[str, Callable[..., object]], Callable[..., object]]
) -> object:
    stream.process = record("vad", stream.process)  # type: ignore[attr-defined]
    return stream


class SentenceLlm(ClauseLlm):
    """Replies with one sentence that has a phrase break before its first comma, a word a token."""

    WORDS = "The tallest mountain in the world is Mount Everest, and it stands in Nepal."

    def stream(self, request: LlmRequest, cancelled: Callable[[], bool]) -> Iterator[LlmOutput]:
        tag = request.messages[-1].content
        self.current = tag
        for i, word in enumerate(self.WORDS.split()):
            if cancelled():
                return
            threading.Event().wait(self.token_s)
            self.made.append((tag, i))
            yield TextDelta(("" if i == 0 else " ") + word)


async def test_a_reply_parks_at_clause_punctuation_never_at_a_phrase_break() -> None:
    """The session's chunker may end a first clause at a phrase break ("The tallest mountain in the
    world | is ..."); a slice must not, or the listener waits mid-sentence for the rest."""
    llm = SentenceLlm()
    engine = LlmEngine(llm)
    try:
        a: list[str] = []
        first = asyncio.create_task(_collect(engine, "A", a))
        await _until(lambda: bool(a))
        await _collect(engine, "B", [])
        await first
        b_starts = llm.made.index(("B", 0))
        # A ran on past "world | is" to its comma ("Everest," is word 8) and the token after it,
        # where the comma is known to end a clause.
        assert llm.made[:b_starts] == [("A", i) for i in range(10)]
        assert engine.queue.parks >= 1
    finally:
        engine.queue.close()
