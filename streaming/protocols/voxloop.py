"""voxloop's WebSocket protocol v1 (docs/protocol.md), pure: text in -> message, event -> text, and
``VoxloopCodec``, which maps the protocol onto a session's inputs and outputs.

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

from agent.config import SessionOptions
from agent.errors import ProtocolError
from agent.events import (
    AudioClear,
    AudioFrame,
    CancelIn,
    CommitIn,
    ConfigureIn,
    DtmfReceived,
    Error,
    Event,
    Input,
    Output,
    PlaybackIn,
    ResponseAudioDone,
    ResponseAudioStarted,
    ResponseDone,
    ResponseStarted,
    ResponseTextDelta,
    SessionReady,
    SpeechStarted,
    SpeechStopped,
    TextIn,
    TranscriptFinal,
    TranscriptPartial,
    TurnMetrics,
)
from streaming.codecs import check_rate, pcm_from_bytes, pcm_to_bytes
from streaming.connection import Meaning, OpenAudio, Outgoing, Reply, RtcAnswer, RtcOffer, WireAudio
from streaming.rtc import RTC_RATE

PROTOCOL_VERSION = 1
MAX_TEXT_MESSAGE_CHARS = 64 * 1024


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    input_sample_rate: int | None = None
    output_sample_rate: int | None = None
    system_prompt: str | None = None
    profile: str | None = None
    audio: str | None = None  # "websocket" (binary frames, the default) or "webrtc"
    echo_cancelled: bool | None = None  # the client removes its own echo (a browser): no server AEC
    voice: str | None = None  # a voice id (GET /v1/voices); the next reply speaks in it


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
            voice = _optional_str(data, "voice")
            echo_cancelled = data.get("echo_cancelled")
            if echo_cancelled is not None and not isinstance(echo_cancelled, bool):
                raise ProtocolError("'echo_cancelled' must be true or false", code="bad_field")
            return SessionUpdate(
                rates.get("input_sample_rate"),
                rates.get("output_sample_rate"),
                prompt,
                profile,
                audio,
                echo_cancelled,
                voice,
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


class VoxloopCodec:
    """Protocol v1 over one WebSocket: JSON control frames and binary PCM (or WebRTC audio).

    The first ``session.update`` opens the session (its rates and audio path are fixed from then on);
    later ones change its options. Audio, text and control before it are refused with a code."""

    name = "session"

    def __init__(self) -> None:
        self.opened: OpenAudio | None = None

    def opening(self) -> list[Meaning]:
        return []  # the client speaks first

    def decode(self, message: str | bytes) -> list[Meaning]:
        if isinstance(message, bytes):
            return [self._audio(message)]
        parsed = parse_client(message)
        match parsed:
            case SessionUpdate():
                return self._update(parsed)
            case Ping(id=ident):
                return [Reply(encode_pong(ident))]
            case InputCommit():
                return [self._open_or_refuse(CommitIn())]
            case ResponseCancel():
                return [self._open_or_refuse(CancelIn())]
            case TextInput(text=text):
                return [self._open_or_refuse(TextIn(text))]
            case Say(text=text):
                return [self._open_or_refuse(TextIn(text, verbatim=True))]
            case PlaybackPosition(turn_id=tid, played_s=played):
                return [self._open_or_refuse(PlaybackIn(tid, played))]
            case WebRtcOffer(sdp=sdp):
                opened = self._opened("not_configured")
                if opened.path != "webrtc":
                    raise ProtocolError(
                        'webrtc.offer needs a session opened with "audio": "webrtc"', code="not_webrtc"
                    )
                return [RtcOffer(sdp)]

    def _opened(self, code: str) -> OpenAudio:
        if self.opened is None:
            raise ProtocolError("send session.update before anything else", code=code)
        return self.opened

    def _open_or_refuse(self, item: Input) -> Input:
        self._opened("not_configured")
        return item

    def _audio(self, data: bytes) -> WireAudio:
        opened = self._opened("audio_before_config")
        if opened.path != "websocket":
            raise ProtocolError(
                "this session takes its audio over WebRTC; binary frames are dropped", code="not_websocket"
            )
        return WireAudio(pcm_from_bytes(data, opened.input_rate))

    def _update(self, update: SessionUpdate) -> list[Meaning]:
        options = SessionOptions(
            profile=update.profile,
            instructions=update.system_prompt,
            voice=update.voice,
            echo_cancelled=update.echo_cancelled,
        )
        if self.opened is not None:
            if (
                update.input_sample_rate
                or update.output_sample_rate
                or update.audio not in (None, self.opened.path)
            ):
                raise ProtocolError(
                    "sample rates and the audio path are fixed once the session is configured; "
                    "reconnect to change them",
                    code="already_configured",
                )
            return [ConfigureIn(options)]
        if update.audio == "webrtc":
            self.opened = OpenAudio(RTC_RATE, RTC_RATE, "webrtc")
        else:
            self.opened = OpenAudio(
                update.input_sample_rate or 16000, update.output_sample_rate or 24000, "websocket"
            )
        return [self.opened, ConfigureIn(options)]

    def encode(self, output: Output | RtcAnswer) -> list[Outgoing]:
        match output:
            case AudioFrame(pcm=pcm):
                return [Outgoing(pcm_to_bytes(pcm), audio=True)]
            case RtcAnswer(sdp=sdp):
                return [Outgoing(encode_answer(sdp))]
            case SessionReady() if self.opened is not None:
                opened = self.opened
                ready = dataclasses.replace(
                    output, input_sample_rate=opened.input_rate, output_sample_rate=opened.output_rate
                )
                return [Outgoing(encode_event(ready))]
            case _:
                return [Outgoing(encode_event(output))]

    def ended(self, hung_up: bool) -> None:
        pass
