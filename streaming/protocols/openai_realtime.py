"""The OpenAI Realtime API (the GA protocol) over one WebSocket, pure: client events in -> what they
mean for a session; the session's events and audio out -> server events (docs/realtime.md).

Everything is a JSON text frame; audio travels base64-encoded inside ``input_audio_buffer.append``
and ``response.output_audio.delta``, as 16-bit PCM at 24 kHz (``audio/pcm``) or G.711 mu-law at
8 kHz (``audio/pcmu``). ``session.created`` goes out when the connection opens; the voxloop session
itself starts with the first event that needs it (audio, an item, a response), in the audio format
the client has chosen by then. Every server event has an ``event_id``; an ``error`` caused by a
client event carries that event's ``event_id``.

How OpenAI's concepts land on voxloop's: a user turn (speech between ``speech_started`` and
``speech_stopped``, or the text items before a ``response.create``) is one voxloop turn and one user
item; the reply to it is one response with one assistant item whose one content part is audio with
its transcript. Server VAD is voxloop's own turn-taking (VAD, the end-of-turn model, barge-in), so
``turn_detection`` ``server_vad`` and ``semantic_vad`` both mean it; a barge-in cancels the response
with reason ``turn_detected``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import uuid
from dataclasses import dataclass, field
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
from streaming.codecs import mulaw_decode, mulaw_encode, pcm_from_bytes, pcm_to_bytes
from streaming.connection import Meaning, OpenAudio, Outgoing, Reply, RtcAnswer, WireAudio

# OpenAI allows 15 MiB of base64 audio in one append; a frame of that much JSON is the limit here.
MAX_EVENT_CHARS = 16 * 1024 * 1024
MAX_APPEND_S = 16.0  # seconds of audio in one append (pcm_from_bytes refuses more)
PCM_RATE = 24000  # audio/pcm is 24 kHz in the GA protocol
G711_RATE = 8000

FORMATS = {"audio/pcm": PCM_RATE, "audio/pcmu": G711_RATE}
NOT_YET = (  # client events of the GA protocol that this server refuses, naming them (docs/realtime.md)
    "conversation.item.retrieve",
    "conversation.item.delete",
    "input_audio_buffer.clear",
    "output_audio_buffer.clear",
)
CLIENT_TYPES = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "conversation.item.create",
    "conversation.item.truncate",
    "response.create",
    "response.cancel",
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def default_session(model: str, instructions: str, voice: str) -> dict[str, Any]:
    """The session object as ``session.created`` reports it (RealtimeSessionCreateRequest's shape)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": instructions,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": PCM_RATE},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": {"type": "audio/pcm", "rate": PCM_RATE}, "voice": voice, "speed": 1.0},
        },
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
    }


@dataclass
class _Response:
    """One response: its ids, what it has said, and how it ends."""

    id: str
    item_id: str
    transcript: str = ""
    cancelled_by_client: bool = False


@dataclass
class _Conversation:
    user_items: dict[int, str] = field(default_factory=dict)  # turn -> the user item's id
    assistant_items: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (turn, samples)
    pending_text: list[str] = field(default_factory=list)  # user text items awaiting response.create
    last_item: str | None = None


class RealtimeCodec:
    """The Realtime API's events over one WebSocket (see the module docstring)."""

    name = "realtime"

    def __init__(self, model: str, instructions: str, voice: str) -> None:
        self.session = default_session(model, instructions, voice)
        self.opened: OpenAudio | None = None
        self.options = SessionOptions(voice=voice)
        self.conversation = _Conversation()
        self.responses: dict[int, _Response] = {}  # turn -> the response answering it
        self.active: int | None = None  # the turn whose response is being made
        self.client_event_id: str | None = None  # of the event being decoded (for its error)

    # -- in -----------------------------------------------------------------------------------------
    def opening(self) -> list[Meaning]:
        return [Reply(self._event("session.created", session=self.session))]

    def decode(self, message: str | bytes) -> list[Meaning]:
        self.client_event_id = None
        if isinstance(message, bytes):
            raise ProtocolError("the Realtime API takes JSON text frames only", code="invalid_event")
        if len(message) > MAX_EVENT_CHARS:
            raise ProtocolError(f"an event of {len(message)} characters is too long", code="event_too_long")
        try:
            data = json.loads(message)
        except json.JSONDecodeError as e:
            raise ProtocolError(f"events must be JSON: {e.msg} at {e.pos}", code="invalid_json") from e
        if not isinstance(data, dict):
            raise ProtocolError("an event must be a JSON object", code="invalid_event")
        ident = data.get("event_id")
        self.client_event_id = ident if isinstance(ident, str) else None
        kind = data.get("type")
        if not isinstance(kind, str):
            raise ProtocolError("an event needs a string field 'type'", code="invalid_event")
        match kind:
            case "session.update":
                return self._session_update(_object(data, "session"))
            case "input_audio_buffer.append":
                audio = self._append(_string(data, "audio"))  # checked before the session opens
                return [*self._open(), audio]
            case "input_audio_buffer.commit":
                return [*self._open(), CommitIn()]
            case "conversation.item.create":
                added = self._item_create(_object(data, "item"))
                return [*self._open(), *added]
            case "conversation.item.truncate":
                return self._truncate(data)
            case "response.create":
                answer = self._response_create()
                return [*self._open(), *answer]
            case "response.cancel":
                if self.active is not None:
                    self.responses[self.active].cancelled_by_client = True
                return [*self._open(), CancelIn()]
            case _ if kind in NOT_YET:
                raise ProtocolError(f"{kind} is not supported by this server yet", code="unsupported_event")
            case _:
                raise ProtocolError(
                    f"unknown event type {kind!r}; known: {', '.join(CLIENT_TYPES)}", code="unknown_event"
                )

    def _open(self) -> list[Meaning]:
        """The session's start, once: called only when the event that needs it was accepted whole
        (an event refused after this would leave the codec open and the connection not)."""
        if self.opened is not None:
            return []
        rate = FORMATS[self.session["audio"]["input"]["format"]["type"]]
        out_rate = FORMATS[self.session["audio"]["output"]["format"]["type"]]
        self.opened = OpenAudio(rate, out_rate, "websocket", session_id=self.session["id"])
        return [self.opened, ConfigureIn(self.options)]

    def _session_update(self, update: dict[str, Any]) -> list[Meaning]:
        session = copy.deepcopy(self.session)
        kind = update.get("type", "realtime")
        if kind != "realtime":
            raise ProtocolError(
                "session.type must be 'realtime' (transcription sessions: not yet)", code="bad_field"
            )
        instructions = update.get("instructions")
        if instructions is not None:
            if not isinstance(instructions, str):
                raise ProtocolError("session.instructions must be a string", code="bad_field")
            session["instructions"] = instructions
        modalities = update.get("output_modalities")
        if modalities is not None and modalities != ["audio"]:
            raise ProtocolError(
                'output_modalities: only ["audio"] is supported yet', code="unsupported_value"
            )
        audio = update.get("audio") or {}
        if not isinstance(audio, dict):
            raise ProtocolError("session.audio must be an object", code="bad_field")
        voice: str | None = None
        for side in ("input", "output"):
            part = audio.get(side) or {}
            if not isinstance(part, dict):
                raise ProtocolError(f"session.audio.{side} must be an object", code="bad_field")
            if "format" in part:
                fmt = _format(part["format"], f"session.audio.{side}.format")
                if self.opened is not None and fmt != session["audio"][side]["format"]:
                    raise ProtocolError(
                        "the audio formats are fixed once audio or a response has started; reconnect",
                        code="already_configured",
                    )
                session["audio"][side]["format"] = fmt
            if side == "input" and "turn_detection" in part:
                session["audio"]["input"]["turn_detection"] = _turn_detection(part["turn_detection"])
            if side == "input" and "transcription" in part:
                session["audio"]["input"]["transcription"] = part["transcription"]
            if side == "output" and "voice" in part:
                raw = part["voice"]
                voice = raw.get("id") if isinstance(raw, dict) else raw
                if not isinstance(voice, str):
                    raise ProtocolError("session.audio.output.voice must be a voice id", code="bad_field")
                session["audio"]["output"]["voice"] = voice
            if side == "output" and "speed" in part:
                speed = part["speed"]
                if not isinstance(speed, (int, float)) or not 0.25 <= speed <= 1.5:
                    raise ProtocolError("session.audio.output.speed must be 0.25-1.5", code="bad_field")
                if speed != 1.0:
                    raise ProtocolError("session.audio.output.speed: only 1.0 yet", code="unsupported_value")
        self.session = session
        self.options = SessionOptions(
            instructions=session["instructions"], voice=session["audio"]["output"]["voice"]
        )
        updated = Reply(self._event("session.updated", session=session))
        if self.opened is None:
            return [updated]
        return [ConfigureIn(SessionOptions(instructions=instructions, voice=voice)), updated]

    def _append(self, audio: str) -> WireAudio:
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ProtocolError(f"'audio' is not valid base64: {e}", code="invalid_base64") from e
        if self.session["audio"]["input"]["format"]["type"] == "audio/pcmu":
            return WireAudio(mulaw_decode(data))
        return WireAudio(pcm_from_bytes(data, PCM_RATE, MAX_APPEND_S))

    def _item_create(self, item: dict[str, Any]) -> list[Meaning]:
        if item.get("type") != "message" or item.get("role") != "user":
            raise ProtocolError(
                "conversation.item.create: only user messages yet (no assistant, system or function items)",
                code="unsupported_value",
            )
        content = item.get("content")
        if not isinstance(content, list) or not content:
            raise ProtocolError("a message item needs a non-empty 'content' list", code="bad_field")
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "input_text"
                or not isinstance(part.get("text"), str)
            ):
                raise ProtocolError(
                    "user content parts must be {type: input_text, text} yet", code="unsupported_value"
                )
            texts.append(part["text"])
        item_id = item.get("id") if isinstance(item.get("id"), str) else new_id("item")
        self.conversation.pending_text.append(" ".join(texts))
        record = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_text", "text": t} for t in texts],
        }
        previous, self.conversation.last_item = self.conversation.last_item, item_id
        return [
            Reply(self._event("conversation.item.added", item=record, previous_item_id=previous)),
            Reply(self._event("conversation.item.done", item=record, previous_item_id=previous)),
        ]

    def _response_create(self) -> list[Meaning]:
        if self.active is not None:
            raise ProtocolError(
                "a response is already in progress; cancel it or wait for response.done",
                code="conversation_already_has_active_response",
            )
        if not self.conversation.pending_text:
            raise ProtocolError(
                "response.create answers the user items created since the last response; there are none "
                "(spoken turns are answered by server VAD)",
                code="unsupported_value",
            )
        text = " ".join(self.conversation.pending_text)
        self.conversation.pending_text.clear()
        return [TextIn(text)]

    def _truncate(self, data: dict[str, Any]) -> list[Meaning]:
        item_id = _string(data, "item_id")
        end_ms = data.get("audio_end_ms")
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
            raise ProtocolError("audio_end_ms must be an integer >= 0", code="bad_field")
        found = self.conversation.assistant_items.get(item_id)
        if found is None:
            raise ProtocolError(f"no assistant item {item_id!r} with audio", code="item_not_found")
        turn, samples = found
        assert self.opened is not None  # noqa: S101 - an assistant item exists only in an open session
        length_ms = samples * 1000 // self.opened.output_rate
        if end_ms > length_ms:
            raise ProtocolError(
                f"audio_end_ms {end_ms} is past the item's audio ({length_ms} ms)", code="invalid_value"
            )
        truncated = self._event(
            "conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end_ms
        )
        return [PlaybackIn(turn, end_ms / 1000), Reply(truncated)]

    # -- out ----------------------------------------------------------------------------------------
    def encode(self, output: Output | RtcAnswer) -> list[Outgoing]:
        return [Outgoing(m, audio=isinstance(output, AudioFrame)) for m in self._server_events(output)]

    def _server_events(self, output: Output | RtcAnswer) -> list[str]:  # exhaustive: mypy checks it
        match output:
            case AudioFrame(turn_id=turn, pcm=pcm):
                response = self.responses.get(turn)
                if response is None:
                    return []
                samples = self.conversation.assistant_items.get(response.item_id, (turn, 0))[1]
                self.conversation.assistant_items[response.item_id] = (turn, samples + len(pcm))
                data = mulaw_encode(pcm) if self._output_rate() == G711_RATE else pcm_to_bytes(pcm)
                return [
                    self._delta(
                        "response.output_audio.delta", response, delta=base64.b64encode(data).decode()
                    )
                ]
            case SpeechStarted(turn_id=turn, audio_s=audio_s):
                item_id = self.conversation.user_items.setdefault(turn, new_id("item"))
                return [
                    self._event(
                        "input_audio_buffer.speech_started",
                        audio_start_ms=round(audio_s * 1000),
                        item_id=item_id,
                    )
                ]
            case SpeechStopped(turn_id=turn, audio_s=audio_s):
                item_id = self.conversation.user_items.setdefault(turn, new_id("item"))
                previous, self.conversation.last_item = self.conversation.last_item, item_id
                item = self._user_audio_item(item_id, None)
                return [
                    self._event(
                        "input_audio_buffer.speech_stopped",
                        audio_end_ms=round(audio_s * 1000),
                        item_id=item_id,
                    ),
                    self._event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous),
                    self._event("conversation.item.added", item=item, previous_item_id=previous),
                ]
            case TranscriptFinal(turn_id=turn, text=text, duration_s=duration_s):
                user_item = self.conversation.user_items.get(turn)
                if user_item is None:
                    return []
                item_id = user_item
                return [
                    self._event(
                        "conversation.item.input_audio_transcription.completed",
                        item_id=item_id,
                        content_index=0,
                        transcript=text,
                        usage={"type": "duration", "seconds": round(duration_s, 3)},
                    ),
                    self._event("conversation.item.done", item=self._user_audio_item(item_id, text)),
                ]
            case ResponseStarted(turn_id=turn):
                return self._response_started(turn)
            case ResponseTextDelta(turn_id=turn, text=text):
                response = self.responses.get(turn)
                if response is None:
                    return []
                response.transcript += text
                return [self._delta("response.output_audio_transcript.delta", response, delta=text)]
            case ResponseAudioDone(turn_id=turn):
                response = self.responses.get(turn)
                return [] if response is None else [self._delta("response.output_audio.done", response)]
            case ResponseDone(turn_id=turn, text=text, interrupted=interrupted):
                return self._response_done(turn, text, interrupted)
            case Error(code=code, message=message):
                return [self._error(code, message)]
            case (
                SessionReady()
                | TranscriptPartial()
                | ResponseAudioStarted()
                | AudioClear()
                | DtmfReceived()
                | TurnMetrics()
                | RtcAnswer()
            ):
                return []

    def _response_started(self, turn: int) -> list[str]:
        response = _Response(new_id("resp"), new_id("item"))
        self.responses[turn] = response
        self.active = turn
        self.conversation.assistant_items[response.item_id] = (turn, 0)
        previous, self.conversation.last_item = self.conversation.last_item, response.item_id
        item = self._assistant_item(response, "in_progress")
        part = {"type": "audio", "transcript": ""}
        return [
            self._event("response.created", response=self._response(response, "in_progress")),
            self._event("response.output_item.added", response_id=response.id, output_index=0, item=item),
            self._event("conversation.item.added", item=item, previous_item_id=previous),
            self._delta("response.content_part.added", response, part=part),
        ]

    def _response_done(self, turn: int, text: str, interrupted: bool) -> list[str]:
        response = self.responses.get(turn)
        if response is None:
            return []
        if self.active == turn:
            self.active = None
        response.transcript = text or response.transcript
        status = "cancelled" if interrupted else "completed"
        item = self._assistant_item(response, "incomplete" if interrupted else "completed")
        part = {"type": "audio", "transcript": response.transcript}
        details: dict[str, Any] = {"type": status}
        if interrupted:
            details["reason"] = "client_cancelled" if response.cancelled_by_client else "turn_detected"
        return [
            self._delta("response.output_audio_transcript.done", response, transcript=response.transcript),
            self._delta("response.content_part.done", response, part=part),
            self._event("response.output_item.done", response_id=response.id, output_index=0, item=item),
            self._event("conversation.item.done", item=item),
            self._event("response.done", response=self._response(response, status, details, [item])),
        ]

    def _response(
        self,
        r: _Response,
        status: str,
        details: dict[str, Any] | None = None,
        output: list[Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "id": r.id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": output or [],
            "output_modalities": ["audio"],
            "conversation_id": self.session["id"].replace("sess_", "conv_"),
            "audio": {"output": self.session["audio"]["output"]},
        }

    def _assistant_item(self, r: _Response, status: str) -> dict[str, Any]:
        return {
            "id": r.item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": [{"type": "output_audio", "transcript": r.transcript}],
        }

    def _user_audio_item(self, item_id: str, transcript: str | None) -> dict[str, Any]:
        return {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": transcript}],
        }

    def _output_rate(self) -> int:
        return self.opened.output_rate if self.opened is not None else PCM_RATE

    def _delta(self, kind: str, r: _Response, **fields: Any) -> str:
        return self._event(
            kind, response_id=r.id, item_id=r.item_id, output_index=0, content_index=0, **fields
        )

    def _error(self, code: str, message: str) -> str:
        kind = (
            "server_error"
            if code in ("internal_error", "tts_failed", "model_failed")
            else "invalid_request_error"
        )
        error = {
            "type": kind,
            "code": code,
            "message": message,
            "param": None,
            "event_id": self.client_event_id,
        }
        self.client_event_id = None
        return self._event("error", error=error)

    def _event(self, kind: str, **fields: Any) -> str:
        return json.dumps({"type": kind, "event_id": new_id("event"), **fields}, separators=(",", ":"))

    def ended(self, hung_up: bool) -> None:
        pass


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"{data.get('type')} needs an object field {key!r}", code="bad_field")
    return value


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"{data.get('type')} needs a string field {key!r}", code="bad_field")
    return value


def _format(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") not in ("audio/pcm", "audio/pcmu", "audio/pcma"):
        raise ProtocolError(f"{where} must be {{type: audio/pcm | audio/pcmu}}", code="bad_field")
    if value["type"] == "audio/pcma":
        raise ProtocolError(
            "audio/pcma (G.711 A-law) is not supported yet; use audio/pcmu", code="unsupported_value"
        )
    if value["type"] == "audio/pcm" and value.get("rate", PCM_RATE) != PCM_RATE:
        raise ProtocolError("audio/pcm is 24000 Hz in the Realtime API", code="bad_field")
    return {"type": value["type"], "rate": FORMATS[value["type"]]}


def _turn_detection(value: object) -> dict[str, Any]:
    if value is None:
        raise ProtocolError(
            "turn_detection null (the client commits and asks for each response) is not supported yet",
            code="unsupported_value",
        )
    if not isinstance(value, dict) or value.get("type") not in ("server_vad", "semantic_vad"):
        raise ProtocolError("turn_detection.type must be server_vad or semantic_vad", code="bad_field")
    if value.get("create_response") is False:
        raise ProtocolError("create_response false is not supported yet", code="unsupported_value")
    return dict(value)
