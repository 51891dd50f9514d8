"""llama.cpp backend (llama-cpp-python), the embedded CPU default.

llama-cpp-python reuses the longest common prefix of the previous evaluation, so within one
conversation only the new tokens of each turn are read (the system prompt comes first and memory only
appends). With several conversations on one model, each switch would re-read the other's whole prompt;
a state cache (``state_cache_mb``) keeps the KV state saved after each completed reply and restores the
one with the longest common prefix, so a session's history is read once, not at every turn.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama
from llama_cpp.llama_cache import LlamaRAMCache

from agent import models
from agent.config import Settings
from agent.errors import ConfigError
from agent.llm.base import LlmOutput, LlmRequest, TextDelta


class _CompactStateLlama(Llama):
    """Saves and restores only the token ids and the KV state for the state cache.

    Llama.save_state also copies the logits buffer (n_batch x n_vocab floats: 311 MB for Qwen2.5),
    which the cache does not count against its capacity: 4 sessions grew the server to 7.5 GB.
    Old logits are never needed after a restore: generation always re-evaluates at least the last
    prompt token, which gives fresh logits.
    """

    def save_state(self) -> llama_cpp.LlamaState:
        size = llama_cpp.llama_state_get_size(self._ctx.ctx)
        buffer = (ctypes.c_uint8 * int(size))()
        n_bytes = int(llama_cpp.llama_state_get_data(self._ctx.ctx, buffer, size))
        return llama_cpp.LlamaState(
            input_ids=self.input_ids.copy(),
            scores=np.zeros((0, self.n_vocab()), np.single),
            n_tokens=self.n_tokens,
            llama_state=bytes(buffer)[:n_bytes],
            llama_state_size=n_bytes,
            seed=self._seed,
        )

    def load_state(self, state: llama_cpp.LlamaState) -> None:
        self.input_ids = state.input_ids.copy()
        self.n_tokens = state.n_tokens
        self._seed = state.seed
        data = (ctypes.c_uint8 * state.llama_state_size).from_buffer_copy(state.llama_state)
        if (
            llama_cpp.llama_state_set_data(self._ctx.ctx, data, state.llama_state_size)
            != state.llama_state_size
        ):
            raise RuntimeError("llama.cpp refused a saved state")


class LlamaCppLlm:
    def __init__(
        self,
        path: Path,
        *,
        name: str,
        threads: int,
        context_tokens: int,
        gpu_layers: int,
        state_cache_mb: int = 0,
    ) -> None:
        self.name = name
        self._llm = _CompactStateLlama(
            model_path=str(path),
            n_ctx=context_tokens,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=gpu_layers,
            verbose=False,
        )
        if state_cache_mb > 0:
            self._llm.set_cache(LlamaRAMCache(capacity_bytes=state_cache_mb << 20))

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one model per process, lives as long as it
    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream(self, request: LlmRequest, cancelled: Callable[[], bool]) -> Iterator[LlmOutput]:
        """Closing the completion generator (on cancel) stops llama.cpp before its next token."""
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        chunks: Any = self._llm.create_chat_completion(
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            max_tokens=request.options.max_tokens,
            temperature=request.options.temperature,
            repeat_penalty=request.options.repeat_penalty,
        )
        try:
            for chunk in chunks:
                if cancelled():
                    break
                delta = chunk["choices"][0].get("delta", {}).get("content")
                if delta:
                    yield TextDelta(delta)
        finally:
            chunks.close()


def load(settings: Settings, progress: models.ProgressFactory | None = None) -> LlamaCppLlm:
    """The GGUF model ``settings.llm.model`` names: embedded ('qwen', 'smollm2') or a file path."""
    embedded = models.prepare_named("llm", settings.llm.model, progress)
    if embedded is not None:
        path, name = embedded
    else:
        path = Path(settings.llm.model)
        if not path.is_file():
            raise ConfigError(
                f"llm_model {settings.llm.model!r} is neither an embedded model nor a GGUF file"
            )
        name = path.stem
    return LlamaCppLlm(
        path,
        name=name,
        threads=settings.llm.threads,
        context_tokens=settings.llm.context_tokens,
        gpu_layers=settings.llm.gpu_layers,
        state_cache_mb=settings.llm.state_cache_mb,
    )
