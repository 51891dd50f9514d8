"""What a session needs from its transport: where events go and where agent audio goes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from agent.audio import AudioChunk, Pcm
from agent.events import Event

EventSink = Callable[[Event], None]


class AudioOutput(Protocol):
    """Agent audio towards the listener, paced in real time (streaming/playout.py implements it)."""

    def push(self, turn_id: int, chunk: AudioChunk) -> None:
        """Queue audio of ``turn_id`` (any sample rate; converted to the wire rate). Never blocks."""
        ...

    def end_turn(self, turn_id: int) -> None:
        """No more audio will be pushed for ``turn_id``."""
        ...

    def clear(self) -> None:
        """Drop every queued sample now (barge-in). What was already sent stays sent. Ends a pause."""
        ...

    def set_sent_listener(self, listener: Callable[[Pcm, int], None] | None) -> None:
        """Call ``listener(frame, sample_rate)`` for every frame as it is handed to the transport."""
        ...

    def pause(self) -> None:
        """Stop sending now, keeping what is queued."""
        ...

    def resume(self) -> None:
        """Go on from where pause() stopped."""
        ...

    def played_s(self, turn_id: int) -> float:
        """Seconds of ``turn_id``'s audio the listener has heard so far (an estimate: sent and due)."""
        ...

    def report_played(self, turn_id: int, played_s: float) -> None:
        """The listener's own report of its position in ``turn_id`` (preferred over the estimate)."""
        ...

    def sent_s(self, turn_id: int) -> float:
        """Seconds of ``turn_id``'s audio handed to the transport so far."""
        ...

    def first_sent_at(self, turn_id: int) -> float | None:
        """Monotonic time the first frame of ``turn_id`` was handed to the transport."""
        ...

    def forget(self, turn_id: int) -> None:
        """Release the bookkeeping of a finished turn."""
        ...

    async def wait_done(self, turn_id: int) -> float:
        """Wait until every frame of ``turn_id`` was sent (or cleared); return seconds sent.
        Cancelling the wait is safe and changes nothing queued."""
        ...
