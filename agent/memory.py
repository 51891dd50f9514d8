"""Context memory: what was heard and said, kept within a token budget.

The system prompt is always kept. Turns are kept newest first until the budget is spent; older ones are
dropped whole (a user message with the reply that answered it) and counted. Consecutive messages of the
same role are merged when rendered, so a user turn whose reply never started is not lost: it is read
together with what the user said next. An assistant message holds only what the user heard; when it
was cut short it is marked ``interrupted``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.llm.base import ChatMessage, ChatRole

# Tokens the chat template adds around each message (role markers, separators), an upper estimate.
MESSAGE_OVERHEAD_TOKENS = 5


@dataclass(frozen=True, slots=True)
class Message:
    role: ChatRole
    text: str
    interrupted: bool = False


def approximate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters a token) for tests and fallbacks."""
    return max(1, (len(text) + 3) // 4)


class Memory:
    def __init__(
        self,
        system_prompt: str,
        budget_tokens: int,
        count_tokens: Callable[[str], int] = approximate_tokens,
    ) -> None:
        self.system_prompt = system_prompt
        self.budget_tokens = budget_tokens
        self._count = count_tokens
        self._messages: list[Message] = []
        self.dropped_messages = 0

    @property
    def messages(self) -> tuple[Message, ...]:
        return tuple(self._messages)

    def add_user(self, text: str) -> Message | None:
        return self._add(Message("user", text.strip()))

    def add_assistant(self, text: str, *, interrupted: bool = False) -> Message | None:
        """What the user heard of a reply. Nothing heard means nothing is added. Returns the message
        (a handle for ``amend``)."""
        return self._add(Message("assistant", text.strip(), interrupted))

    def _add(self, message: Message) -> Message | None:
        if not message.text:
            return None
        self._messages.append(message)
        self._trim()
        return message

    def amend(
        self, message: Message | None, text: str, *, after: Message | None = None, interrupted: bool = True
    ) -> Message | None:
        """Replace the assistant ``message`` (a handle from ``add_assistant``) with ``text``: the client
        told us later what it really heard. Empty ``text`` removes it. With ``message`` None (nothing
        was thought heard) the text is inserted right after ``after``, the user message it answered.
        Messages no longer stored (trimmed) are left alone. Returns the new handle."""
        anchor = message if message is not None else after
        i = next((i for i, m in enumerate(self._messages) if m is anchor), None)
        if i is None:
            return None
        new = Message("assistant", text.strip(), interrupted) if text.strip() else None
        if message is not None:
            del self._messages[i]
        else:
            i += 1
        if new is not None:
            self._messages.insert(i, new)
            self._trim()
        return new

    def render(self, pending_user: str | None = None) -> tuple[ChatMessage, ...]:
        """Chat messages for the LLM: system prompt + the newest turns that fit the budget. Pure.

        ``pending_user``: a user message not (yet) committed, rendered last (a speculative reply)."""
        merged: list[Message] = []
        pending = [Message("user", pending_user)] if pending_user else []
        for m in [*self._messages, *pending]:
            if merged and merged[-1].role == m.role:
                prev = merged[-1]
                merged[-1] = Message(m.role, f"{prev.text} {m.text}", prev.interrupted or m.interrupted)
            else:
                merged.append(m)
        budget = self.budget_tokens - self._cost(self.system_prompt)
        kept: list[Message] = []
        for m in reversed(merged):
            cost = self._cost(m.text)
            if cost > budget:
                break
            budget -= cost
            kept.append(m)
        kept.reverse()
        # The conversation must start with a user message after the system prompt.
        while kept and kept[0].role != "user":
            kept.pop(0)
        return (ChatMessage("system", self.system_prompt), *(ChatMessage(m.role, m.text) for m in kept))

    def _cost(self, text: str) -> int:
        return self._count(text) + MESSAGE_OVERHEAD_TOKENS

    def _trim(self) -> None:
        """Drop the oldest stored messages that can never fit again, so storage stays bounded."""
        budget = self.budget_tokens - self._cost(self.system_prompt)
        total = sum(self._cost(m.text) for m in self._messages)
        while self._messages and total > budget:
            total -= self._cost(self._messages.pop(0).text)
            self.dropped_messages += 1
