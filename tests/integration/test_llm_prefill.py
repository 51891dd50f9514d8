"""Prefill with the real llama.cpp runtime (the small embedded SmolLM2): reading a partial transcript
ahead changes nothing in what the model then writes, and the final prompt reads only what is new."""

from __future__ import annotations

import functools

from agent.config import Settings
from agent.llm.base import ChatMessage, GenerationOptions, LlmRequest, TextDelta
from agent.llm.llama_cpp import LlamaCppLlm, load

SYSTEM = ChatMessage("system", "You are a helpful voice assistant. Answer in one short sentence.")
GREEDY = GenerationOptions(max_tokens=24, temperature=0.0)


@functools.cache
def _llm() -> LlamaCppLlm:
    return load(Settings.of(llm_model="smollm2", llm_state_cache_mb=0))


def _answer(llm: LlamaCppLlm, text: str) -> str:
    request = LlmRequest((SYSTEM, ChatMessage("user", text)), GREEDY)
    return "".join(o.text for o in llm.stream(request, lambda: False) if isinstance(o, TextDelta))


def test_reading_a_partial_ahead_changes_nothing_in_the_answer_and_saves_its_tokens() -> None:
    llm = _llm()
    final = "What is the capital of France and what is it famous for?"
    partial = "What is the capital of France and"
    _answer(llm, "Hello there.")  # the cache now holds another prompt
    plain = _answer(llm, final)

    _answer(llm, "Hello there.")
    read = llm.prefill(LlmRequest((SYSTEM, ChatMessage("user", partial))), lambda: False)
    assert read > 0
    assert llm.prefill(LlmRequest((SYSTEM, ChatMessage("user", partial))), lambda: False) == 0  # read
    tokens = llm.prompt_tokens(LlmRequest((SYSTEM, ChatMessage("user", final))))
    assert tokens is not None
    have = llm._llm.input_ids[: llm._llm.n_tokens].tolist()
    shared = next((i for i, (a, b) in enumerate(zip(have, tokens, strict=False)) if a != b), len(have))
    assert shared >= len(have) - 1 > 0  # what was read is the start of the final prompt
    assert _answer(llm, final) == plain  # greedy: the same words, with or without the prefill


def test_a_cancelled_prefill_stops_between_slices() -> None:
    llm = _llm()
    _answer(llm, "Hello there.")
    long_text = " ".join(["Tell me about the history of the city of Rome"] * 8)
    calls = iter(range(100))
    read = llm.prefill(LlmRequest((SYSTEM, ChatMessage("user", long_text))), lambda: next(calls) >= 1)
    assert 0 < read <= 16  # one slice, then it noticed
