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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama
from llama_cpp.llama_cache import LlamaRAMCache
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from agent import models
from agent.config import Settings
from agent.errors import ConfigError
from agent.llm.base import LlmOutput, LlmRequest, TextDelta

PREFILL_SLICE = 16  # tokens read between checks for cancellation (~50-80 ms on 2 cores)


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
        self._requires_eval = True  # the logits are not this state's: evaluate before sampling
        self._seed = state.seed
        data = (ctypes.c_uint8 * state.llama_state_size).from_buffer_copy(state.llama_state)
        if (
            llama_cpp.llama_state_set_data(self._ctx.ctx, data, state.llama_state_size)
            != state.llama_state_size
        ):
            raise RuntimeError("llama.cpp refused a saved state")


@dataclass(frozen=True, slots=True)
class _Paused:
    """A generation stopped between tokens: llama.cpp's state, and the sampler ``generate`` made for
    it (which holds the repeat penalty's token history; the next ``generate`` replaces it)."""

    state: llama_cpp.LlamaState
    sampler: Any
    mirostat_mu: Any


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
        # The GGUF's own chat template, as create_chat_completion renders it: prefill must produce the
        # very tokens a later completion starts with, or its prefix is not reused.
        self._formatter: Jinja2ChatFormatter | None = None
        template = self._llm.metadata.get("tokenizer.chat_template")
        if template and self._llm.chat_format == "chat_template.default":
            eos, bos = self._llm.token_eos(), self._llm.token_bos()
            text = self._llm._model.token_get_text
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=text(eos) if eos != -1 else "",
                bos_token=text(bos) if bos != -1 else "",
                stop_token_ids=[eos],
            )

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one model per process, lives as long as it
    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def prompt_tokens(self, request: LlmRequest, *, open_ended: bool = False) -> list[int] | None:
        """The tokens create_chat_completion would evaluate for ``request`` (None: no template);
        ``open_ended``: only up to the end of the last message's text (what a longer version of that
        message shares with this one)."""
        if self._formatter is None:
            return None
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        result = self._formatter(messages=messages)  # type: ignore[arg-type]
        prompt = result.prompt
        last = request.messages[-1].content
        if open_ended and last and (at := prompt.rfind(last)) >= 0:
            prompt = prompt[: at + len(last)]
        return self._llm.tokenize(prompt.encode("utf-8"), add_bos=not result.added_special, special=True)

    def prefill(self, request: LlmRequest, cancelled: Callable[[], bool]) -> int:
        tokens = self.prompt_tokens(request, open_ended=True)
        if tokens is None:
            return 0
        llm = self._llm
        common = Llama.longest_token_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)
        if llm.cache is not None:  # another conversation may have run since: restore this one's state
            try:
                saved = llm.cache[tokens]
                if Llama.longest_token_prefix(saved.input_ids.tolist(), tokens) > common:
                    llm.load_state(saved)
                    common = Llama.longest_token_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)
            except KeyError:
                pass
        # The last token may be half a word the final transcript goes on with: leave it unread.
        end = len(tokens) - 1
        if common >= end:
            return 0
        llm.n_tokens = common  # eval() drops the cache from here on
        read = 0
        for i in range(common, end, PREFILL_SLICE):
            if cancelled():
                break
            llm.eval(tokens[i : min(end, i + PREFILL_SLICE)])
            read += min(end, i + PREFILL_SLICE) - i
        return read

    def pause(self) -> object:
        llm = self._llm
        return _Paused(llm.save_state(), llm._sampler, llm._mirostat_mu)

    def resume(self, paused: object) -> None:
        assert isinstance(paused, _Paused)
        llm = self._llm
        llm.load_state(paused.state)
        llm._sampler, llm._mirostat_mu = paused.sampler, paused.mirostat_mu

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
