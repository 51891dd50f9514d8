"""Dialogue LLM: one shared model; ``stream_chat`` is a blocking generator run in the LLM worker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    max_tokens: int = 120
    temperature: float = 0.5


class Llm(Protocol):
    name: str

    def count_tokens(self, text: str) -> int: ...

    def stream_chat(
        self, messages: list[dict[str, str]], options: GenerationOptions, stop: threading.Event
    ) -> Iterator[str]:
        """Yield text deltas; stop soon after ``stop`` is set. Blocking: run it in a worker thread."""
        ...
