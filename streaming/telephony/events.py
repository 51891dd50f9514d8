"""What a provider's media stream says, once its serializer has read it. Frozen dataclasses, closed set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str


@dataclass(frozen=True, slots=True)
class Started:
    stream_id: str
    call_id: str
    encoding: str  # "audio/x-mulaw"
    sample_rate: int
    channels: int
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Media:
    payload: bytes  # mu-law, 8 kHz
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Stopped:
    pass


CallEvent = Connected | Started | Media | MarkPlayed | Dtmf | Stopped


class Serializer(Protocol):
    """One provider's wire format. ``parse`` raises agent.errors.ProtocolError on a bad message."""

    name: str

    def parse(self, raw: str | bytes) -> CallEvent: ...

    def media(self, stream_id: str, payload: bytes) -> str: ...

    def mark(self, stream_id: str, name: str) -> str: ...

    def clear(self, stream_id: str) -> str: ...
