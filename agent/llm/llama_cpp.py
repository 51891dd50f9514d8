"""llama.cpp backend (llama-cpp-python), the embedded CPU default.

llama-cpp-python reuses the longest common prefix of the previous evaluation, so the system prompt's
KV state stays warm between turns as long as the prompt starts the same way (it does: the system
prompt comes first and memory only appends).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llama_cpp import Llama

from agent.llm.base import GenerationOptions


class LlamaCppLlm:
    def __init__(self, path: Path, *, name: str, threads: int, context_tokens: int, gpu_layers: int) -> None:
        self.name = name
        self._llm = Llama(
            model_path=str(path),
            n_ctx=context_tokens,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=gpu_layers,
            verbose=False,
        )

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one model per process, lives as long as it
    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream_chat(
        self, messages: list[dict[str, str]], options: GenerationOptions, stop: threading.Event
    ) -> Iterator[str]:
        chunks: Any = self._llm.create_chat_completion(
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            max_tokens=options.max_tokens,
            temperature=options.temperature,
        )
        for chunk in chunks:
            if stop.is_set():
                break
            delta = chunk["choices"][0].get("delta", {}).get("content")
            if delta:
                yield delta
