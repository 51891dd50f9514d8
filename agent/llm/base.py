"""Dialogue LLM: structured messages in, a stream of outputs (text deltas; later tool calls) out.

``stream`` is a blocking generator run in the LLM queue's worker thread (agent/scheduler.py); it checks
``cancelled()`` between tokens, so a cancelled reply frees the model within one token. The engine may
stop reading one stream between tokens, serve another request, and come back to it (several sessions
share one model: a reply's first clause goes before the rest of another's): ``pause()`` before
the other request, ``resume()`` with what it returned before reading the paused stream again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

ChatRole = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: ChatRole
    content: str


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    max_tokens: int = 120
    temperature: float = 0.5
    repeat_penalty: float = 1.0  # 1 = off


@dataclass(frozen=True, slots=True)
class LlmRequest:
    messages: tuple[ChatMessage, ...]
    options: GenerationOptions = GenerationOptions()


@dataclass(frozen=True, slots=True)
class TextDelta:
    """The next piece of the reply's text."""

    text: str


LlmOutput = TextDelta  # tool calls join this union when the dialogue brain has them


class Llm(Protocol):
    name: str

    def count_tokens(self, text: str) -> int: ...

    def prefill(self, request: LlmRequest, cancelled: Callable[[], bool]) -> int:
        """Read ``request``'s prompt into the model's cache without generating, so that a request
        sharing its beginning reads only what differs (the user's words from a partial transcript,
        read while they are still speaking). Returns the tokens read (0: nothing new, or a backend
        without such a cache). Stops between slices once ``cancelled()``. Blocking."""
        ...

    def stream(self, request: LlmRequest, cancelled: Callable[[], bool]) -> Iterator[LlmOutput]:
        """Yield outputs as they are generated; stop before the next token once ``cancelled()``.
        Blocking: run it in a worker thread."""
        ...

    def pause(self) -> object:
        """What the stream being read needs to go on after other requests have used the model (for
        llama.cpp: its KV cache, tokens and sampler). Called between two of its outputs."""
        ...

    def resume(self, paused: object) -> None:
        """Put back what ``pause()`` returned, before the paused stream is read again."""
        ...
