"""The request-driven engines on a real loop and real worker threads, with fake models: priorities,
cancellation before and during the work, batches, and errors routed to the request that caused them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest

from agent.asr.base import AsrPurpose, AsrRequest, Transcript
from agent.engines import AsrEngine, LlmEngine
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
