"""The Realtime API codec, pure: client events -> session inputs, session outputs -> server events,
each server event validated against the ``openai`` SDK's own pydantic models."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from agent.config import SessionOptions
from agent.errors import VoxloopError
from agent.events import (
    AudioFrame,
    CancelIn,
    CommitIn,
    ConfigureIn,
    Error,
    PlaybackIn,
    ResponseAudioDone,
    ResponseDone,
    ResponseStarted,
    ResponseTextDelta,
    SpeechStarted,
    SpeechStopped,
    TextIn,
    TranscriptFinal,
)
from streaming.codecs import mulaw_encode
from streaming.connection import OpenAudio, Reply, WireAudio
from streaming.protocols.openai_realtime import RealtimeCodec

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)


def _validated(message: str | bytes) -> dict[str, Any]:
    data = json.loads(message)
    SERVER_EVENT.validate_python(data, strict=False)
    assert data["event_id"].startswith("event_")
    return data


def _replies(meanings: list[Any]) -> list[dict[str, Any]]:
    return [_validated(m.message) for m in meanings if isinstance(m, Reply)]


def _events(codec: RealtimeCodec, output: Any) -> list[dict[str, Any]]:
    return [_validated(out.message) for out in codec.encode(output)]


def _codec() -> RealtimeCodec:
    return RealtimeCodec("voxloop", "Be brief.", "heart")


def _send(codec: RealtimeCodec, event: dict[str, Any]) -> list[Any]:
    return codec.decode(json.dumps(event))


def test_the_server_speaks_first_and_session_update_changes_voice_and_instructions() -> None:
    codec = _codec()
    (created,) = _replies(codec.opening())
    assert created["type"] == "session.created"
    assert created["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    update = {"type": "realtime", "instructions": "Be a pirate.", "audio": {"output": {"voice": "ember"}}}
    (updated,) = _replies(_send(codec, {"type": "session.update", "session": update}))
    assert updated["session"]["audio"]["output"]["voice"] == "ember"
    assert updated["session"]["instructions"] == "Be a pirate."
    opened = _send(
        codec, {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0\0" * 480).decode()}
    )
    assert opened[0] == OpenAudio(24000, 24000, "websocket", session_id=created["session"]["id"])
    assert opened[1] == ConfigureIn(SessionOptions(instructions="Be a pirate.", voice="ember"))
    assert isinstance(opened[2], WireAudio) and len(opened[2].pcm) == 480
    later = _send(
        codec, {"type": "session.update", "session": {"type": "realtime", "instructions": "Be kind."}}
    )
    assert later[0] == ConfigureIn(SessionOptions(instructions="Be kind."))


def test_g711_mu_law_in_and_out_at_8_khz() -> None:
    codec = _codec()
    codec.opening()
    pcmu = {"type": "audio/pcmu"}
    _send(
        codec,
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"format": pcmu}, "output": {"format": pcmu}}},
        },
    )
    tone = (np.sin(np.arange(160) / 3) * 8000).astype(np.int16)
    opened = _send(
        codec, {"type": "input_audio_buffer.append", "audio": base64.b64encode(mulaw_encode(tone)).decode()}
    )
    assert opened[0].input_rate == opened[0].output_rate == 8000
    assert np.abs(opened[2].pcm.astype(int) - tone).max() < 300
    _events(codec, ResponseStarted(1))
    (delta,) = _events(codec, AudioFrame(1, tone, 8000, 0))
    assert base64.b64decode(delta["delta"]) == mulaw_encode(tone)


def test_a_spoken_turn_and_its_answer_as_openai_events() -> None:
    codec = _codec()
    codec.opening()
    _send(codec, {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0\0" * 480).decode()})
    (started,) = _events(codec, SpeechStarted(1, 0.25))
    assert (started["type"], started["audio_start_ms"]) == ("input_audio_buffer.speech_started", 250)
    stopped = _events(codec, SpeechStopped(1, 1.5, "silence"))
    assert [e["type"] for e in stopped] == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
    ]
    assert stopped[0]["audio_end_ms"] == 1500 and stopped[0]["item_id"] == started["item_id"]
    final = _events(codec, TranscriptFinal(1, "What time is it?", 1.25))
    assert final[0]["transcript"] == "What time is it?" and final[0]["item_id"] == started["item_id"]
    created = _events(codec, ResponseStarted(1))
    assert [e["type"] for e in created] == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    response_id, item_id = created[0]["response"]["id"], created[1]["item"]["id"]
    (text,) = _events(codec, ResponseTextDelta(1, "It is noon."))
    audio = _events(codec, AudioFrame(1, np.ones(480, np.int16), 24000, 0))
    for e in (text, *audio):
        assert (e["response_id"], e["item_id"], e["output_index"], e["content_index"]) == (
            response_id,
            item_id,
            0,
            0,
        )
    assert len(base64.b64decode(audio[0]["delta"])) == 960
    assert _events(codec, ResponseAudioDone(1, 0.02))[0]["type"] == "response.output_audio.done"
    done = _events(codec, ResponseDone(1, "It is noon.", interrupted=False))
    assert done[0]["transcript"] == "It is noon."
    assert done[-1]["type"] == "response.done" and done[-1]["response"]["status"] == "completed"
    # truncating the answer to what was heard: the session learns the play position
    truncate = {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": 10,
    }
    meanings = _send(codec, truncate)
    assert meanings[0] == PlaybackIn(1, 0.01)
    assert _replies(meanings)[0]["type"] == "conversation.item.truncated"
    with pytest.raises(VoxloopError) as e:
        _send(codec, {**truncate, "audio_end_ms": 21})  # 20 ms of audio were sent
    assert e.value.code == "invalid_value"


def test_cancel_and_barge_in_end_the_response_with_their_reasons() -> None:
    codec = _codec()
    codec.opening()
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi."}]}
    added = _send(codec, {"type": "conversation.item.create", "item": item})
    assert [r["type"] for r in _replies(added)] == ["conversation.item.added", "conversation.item.done"]
    assert _send(codec, {"type": "response.create"})[-1] == TextIn("Hi.")
    _events(codec, ResponseStarted(1))
    with pytest.raises(VoxloopError) as e:
        _send(codec, {"type": "response.create", "event_id": "mine"})
    assert e.value.code == "conversation_already_has_active_response"
    (error,) = _events(codec, Error(1, e.value.code, e.value.message))
    assert error["error"]["event_id"] == "mine"
    assert _send(codec, {"type": "response.cancel"}) == [CancelIn()]
    done = _events(codec, ResponseDone(1, "", interrupted=True))[-1]
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    _events(codec, ResponseStarted(2))
    done = _events(codec, ResponseDone(2, "Well", interrupted=True))[-1]
    assert done["response"]["status_details"]["reason"] == "turn_detected"
    assert _send(codec, {"type": "input_audio_buffer.commit"}) == [CommitIn()]


def _update(audio: dict[str, Any]) -> str:
    return json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": audio}})


ASSISTANT_ITEM = {"type": "message", "role": "assistant", "content": []}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("[1, 2]", "invalid_event"),
        ('{"event_id": "x"}', "invalid_event"),
        ('{"type": "input_audio_buffer.append", "audio": "AAA"}', "invalid_base64"),
        ('{"type": "input_audio_buffer.append", "audio": "AAAA"}', "bad_audio_frame"),
        (json.dumps({"type": "conversation.item.create", "item": ASSISTANT_ITEM}), "unsupported_value"),
        (_update({"input": {"turn_detection": None}}), "unsupported_value"),
        (_update({"output": {"format": {"type": "audio/pcma"}}}), "unsupported_value"),
        ('{"type": "input_audio_buffer.clear"}', "unsupported_event"),
        ('{"type": "transcription_session.update"}', "unknown_event"),
    ],
)
def test_bad_events_are_refused_with_a_code_and_open_nothing(raw: str, code: str) -> None:
    codec = _codec()
    codec.opening()
    with pytest.raises(VoxloopError) as e:
        codec.decode(raw)
    assert e.value.code == code
    assert codec.opened is None
    with pytest.raises(VoxloopError):
        codec.decode(b"\x00\x01")
