"""The WebSocket wire protocol (docs/protocol.md), as pure functions: text in -> message, event -> text.

Client -> server: JSON text frames (``ClientMessage``) and binary frames of 16-bit little-endian mono
PCM at the configured input rate. Server -> client: JSON text frames (every ``agent.events.Event``,
plus ``pong``) and binary frames of PCM at the configured output rate.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from agent.errors import ProtocolError
from agent.events import (
    AudioClear,
    DtmfReceived,
    Error,
    Event,
    ResponseAudioDone,
    ResponseAudioStarted,
    ResponseDone,
    ResponseStarted,
    ResponseTextDelta,
    SessionReady,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    TurnMetrics,
)
from streaming.audio import check_rate

PROTOCOL_VERSION = 1
MAX_TEXT_MESSAGE_CHARS = 64 * 1024


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    input_sample_rate: int | None = None
    output_sample_rate: int | None = None
    system_prompt: str | None = None
    profile: str | None = None
    audio: str | None = None  # "websocket" (binary frames, the default) or "webrtc"


@dataclass(frozen=True, slots=True)
class InputCommit:
    pass


@dataclass(frozen=True, slots=True)
class ResponseCancel:
    pass


@dataclass(frozen=True, slots=True)
class TextInput:
    text: str


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Ping:
    id: str | int | None = None


@dataclass(frozen=True, slots=True)
class WebRtcOffer:
    sdp: str


@dataclass(frozen=True, slots=True)
class PlaybackPosition:
    turn_id: int
    played_s: float


ClientMessage = (
    SessionUpdate | InputCommit | ResponseCancel | TextInput | Say | Ping | PlaybackPosition | WebRtcOffer
)

AUDIO_PATHS = ("websocket", "webrtc")

CLIENT_TYPES = (
    "session.update",
    "input_audio.commit",
    "response.cancel",
    "text.input",
    "say",
    "ping",
    "playback.position",
    "webrtc.offer",
)


def parse_client(raw: str) -> ClientMessage:
    """One client text frame -> message. Raises ProtocolError with a code saying what is wrong."""
    if len(raw) > MAX_TEXT_MESSAGE_CHARS:
        raise ProtocolError(f"text frame of {len(raw)} characters is too long", code="message_too_long")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"text frames must be JSON: {e.msg} at {e.pos}", code="invalid_json") from e
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a JSON object", code="bad_message")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("a message needs a string field 'type'", code="bad_message")
    match kind:
        case "session.update":
            rates = {}
            for key in ("input_sample_rate", "output_sample_rate"):
                if key in data:
                    rates[key] = check_rate(data[key])
            prompt = _optional_str(data, "system_prompt")
            profile = _optional_str(data, "profile")
            audio = _optional_str(data, "audio")
            if audio not in (None, *AUDIO_PATHS):
                raise ProtocolError(f"'audio' must be one of {', '.join(AUDIO_PATHS)}", code="bad_field")
            return SessionUpdate(
                rates.get("input_sample_rate"), rates.get("output_sample_rate"), prompt, profile, audio
            )
        case "input_audio.commit":
            return InputCommit()
        case "response.cancel":
            return ResponseCancel()
        case "text.input":
            return TextInput(_required_str(data, "text"))
        case "say":
            return Say(_required_str(data, "text"))
        case "ping":
            ident = data.get("id")
            if ident is not None and not isinstance(ident, (str, int)):
                raise ProtocolError("ping 'id' must be a string or an integer", code="bad_field")
            return Ping(ident)
        case "webrtc.offer":
            return WebRtcOffer(_required_str(data, "sdp"))
        case "playback.position":
            turn_id, played = data.get("turn_id"), data.get("played_s")
            if not isinstance(turn_id, int) or isinstance(turn_id, bool) or turn_id < 0:
                raise ProtocolError("playback.position needs an integer 'turn_id' >= 0", code="bad_field")
            if (
                not isinstance(played, (int, float))
                or isinstance(played, bool)
                or not math.isfinite(played)
                or played < 0
            ):
                raise ProtocolError("playback.position needs a number 'played_s' >= 0", code="bad_field")
            return PlaybackPosition(turn_id, float(played))
        case _:
            raise ProtocolError(
                f"unknown message type {kind!r}; known: {', '.join(CLIENT_TYPES)}", code="unknown_type"
            )


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ProtocolError(f"field {key!r} must be a string", code="bad_field")
    return value


def _required_str(data: dict[str, Any], key: str) -> str:
    value = _optional_str(data, key)
    if value is None:
        raise ProtocolError(f"{data.get('type')} needs a string field {key!r}", code="bad_field")
    return value


def event_type(event: Event) -> str:
    match event:
        case SessionReady():
            return "session.ready"
        case SpeechStarted():
            return "speech.started"
        case SpeechStopped():
            return "speech.stopped"
        case TranscriptPartial():
            return "transcript.partial"
        case TranscriptFinal():
            return "transcript.final"
        case ResponseStarted():
            return "response.started"
        case ResponseTextDelta():
            return "response.text.delta"
        case ResponseAudioStarted():
            return "response.audio.started"
        case ResponseAudioDone():
            return "response.audio.done"
        case ResponseDone():
            return "response.done"
        case AudioClear():
            return "audio.clear"
        case DtmfReceived():
            return "dtmf"
        case TurnMetrics():
            return "turn.metrics"
        case Error():
            return "error"


def encode_event(event: Event) -> str:
    return json.dumps({"type": event_type(event), **dataclasses.asdict(event)}, separators=(",", ":"))


def encode_pong(ident: str | int | None) -> str:
    return json.dumps({"type": "pong", "id": ident})


def encode_answer(sdp: str) -> str:
    return json.dumps({"type": "webrtc.answer", "sdp": sdp})
