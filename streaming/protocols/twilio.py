"""Twilio Media Streams (bidirectional, ``<Connect><Stream>``), as pure functions.

Message formats from Twilio's documentation, "Media Streams - WebSocket Messages"
(https://www.twilio.com/docs/voice/media-streams/websocket-messages): Twilio sends ``connected``,
``start``, ``media``, ``mark``, ``dtmf`` and ``stop``, each with ``event`` and (after connected)
``sequenceNumber`` and ``streamSid``; the server sends ``media`` (base64 mu-law 8 kHz, no headers),
``mark`` (Twilio echoes it back when the audio before it has played) and ``clear`` (Twilio drops
the audio it has buffered and echoes every pending mark at once).
TwiML: "TwiML Voice: <Stream>" (https://www.twilio.com/docs/voice/twiml/stream).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Protocol
from xml.sax.saxutils import quoteattr

from agent.errors import ProtocolError


# -- what a provider's media stream says, once its serializer has read it (closed set) ---------------
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


MAX_PAYLOAD_BYTES = 8000  # one second of 8 kHz mu-law; Twilio sends 160-byte (20 ms) chunks
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class TwilioSerializer:
    name = "twilio"

    def parse(self, raw: str | bytes) -> CallEvent:
        if isinstance(raw, bytes):
            raise ProtocolError("Twilio media streams send text frames only", code="bad_message")
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ProtocolError(f"not JSON: {e.msg}", code="invalid_json") from e
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            raise ProtocolError("a message needs a string field 'event'", code="bad_message")
        match data["event"]:
            case "connected":
                return Connected(str(data.get("protocol", "")))
            case "start":
                start = _object(data, "start")
                fmt = _object(start, "mediaFormat")
                params = start.get("customParameters") or {}
                if not isinstance(params, dict):
                    raise ProtocolError("start.customParameters must be an object", code="bad_field")
                return Started(
                    stream_id=_string(start, "streamSid"),
                    call_id=_string(start, "callSid"),
                    encoding=_string(fmt, "encoding"),
                    sample_rate=_integer(fmt, "sampleRate"),
                    channels=_integer(fmt, "channels"),
                    parameters={str(k): str(v) for k, v in params.items()},
                )
            case "media":
                media = _object(data, "media")
                payload = _string(media, "payload")
                if len(payload) > MAX_PAYLOAD_BYTES * 4 // 3 + 4:
                    raise ProtocolError("media payload over one second of audio", code="audio_frame_too_long")
                try:
                    audio = base64.b64decode(payload, validate=True)
                except (binascii.Error, ValueError) as e:
                    raise ProtocolError(f"media.payload is not base64: {e}", code="bad_audio_frame") from e
                if not audio:
                    raise ProtocolError("empty media payload", code="bad_audio_frame")
                stamp = media.get("timestamp")
                return Media(
                    audio, int(stamp) if isinstance(stamp, (int, str)) and str(stamp).isdigit() else None
                )
            case "mark":
                return MarkPlayed(_string(_object(data, "mark"), "name"))
            case "dtmf":
                digit = _string(_object(data, "dtmf"), "digit")
                if digit not in DTMF_DIGITS:
                    raise ProtocolError(f"unknown DTMF digit {digit!r}", code="bad_field")
                return Dtmf(digit)
            case "stop":
                return Stopped()
            case other:
                raise ProtocolError(f"unknown event {other!r}", code="unknown_type")

    def media(self, stream_id: str, payload: bytes) -> str:
        message = {
            "event": "media",
            "streamSid": stream_id,
            "media": {"payload": base64.b64encode(payload).decode()},
        }
        return json.dumps(message)

    def mark(self, stream_id: str, name: str) -> str:
        return json.dumps({"event": "mark", "streamSid": stream_id, "mark": {"name": name}})

    def clear(self, stream_id: str) -> str:
        return json.dumps({"event": "clear", "streamSid": stream_id})


def twiml_connect(stream_url: str, parameters: dict[str, str] | None = None) -> str:
    """The TwiML that connects an incoming call to the media stream at ``stream_url`` (wss://...)."""
    params = "".join(
        f"<Parameter name={quoteattr(k)} value={quoteattr(v)} />" for k, v in (parameters or {}).items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={quoteattr(stream_url)}>{params}</Stream></Connect></Response>"
    )


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"field {key!r} must be an object", code="bad_field")
    return value


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"field {key!r} must be a string", code="bad_field")
    return value


def _integer(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"field {key!r} must be an integer", code="bad_field")
    return value
