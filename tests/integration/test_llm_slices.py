"""Replies served in slices on the real llama.cpp runtime (the small embedded SmolLM2): a reply parked
at a clause boundary so another reply's first clause goes first, then resumed, writes exactly what it
writes alone: its KV cache, tokens and sampler (with the repeat penalty's history) come back intact."""

from __future__ import annotations

import asyncio
import functools

from agent.chunker import ClauseChunker
from agent.config import Settings
from agent.engines import LlmEngine
from agent.llm.base import ChatMessage, GenerationOptions, LlmRequest, TextDelta
from agent.llm.llama_cpp import LlamaCppLlm, load

SYSTEM = ChatMessage("system", "You are a helpful voice assistant.")
# Greedy, with a repeat penalty: the penalty reads the tokens the sampler has seen, so a resumed
# reply that got another reply's sampler would choose other words.
OPTIONS = GenerationOptions(max_tokens=48, temperature=0.0, repeat_penalty=1.3)
A = "Name six animals that live on a farm, separated by commas, and say one thing about each."
B = "Tell me a short story about a cat who sails a boat to an island, in four sentences."


@functools.cache
def _llm() -> LlamaCppLlm:
    return load(Settings.of(llm_model="smollm2", llm_state_cache_mb=0))


def _request(text: str) -> LlmRequest:
    return LlmRequest((SYSTEM, ChatMessage("user", text)), OPTIONS)


async def _reply(engine: LlmEngine, text: str, started: asyncio.Event | None = None) -> str:
    out = []
    async with engine.generate(_request(text)) as stream:
        async for delta in stream:
            assert isinstance(delta, TextDelta)
            out.append(delta.text)
            if started is not None:
                started.set()
    return "".join(out)


async def test_a_reply_parked_for_another_goes_on_exactly_as_it_would_have_alone() -> None:
    engine = LlmEngine(_llm())
    try:
        alone_a = await _reply(engine, A)
        alone_b = await _reply(engine, B)
        for text in (alone_a, alone_b):  # there are clauses to slice at
            chunker = ClauseChunker()
            assert len(chunker.push(text) + chunker.flush()) >= 3, text
        started = asyncio.Event()
        first = asyncio.create_task(_reply(engine, A, started))
        await started.wait()  # A is generating: B arrives behind it
        both_b = await _reply(engine, B)
        both_a = await first
        assert engine.queue.parks >= 2  # A parked for B's first clause, and they took turns
        assert both_a == alone_a
        assert both_b == alone_b
    finally:
        engine.queue.close()
