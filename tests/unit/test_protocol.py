from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from agent import events
from agent.errors import ProtocolError
from streaming.protocols.voxloop import (
    InputCommit,
    Ping,
    PlaybackPosition,
    Say,
    SessionUpdate,
    TextInput,
    WebRtcOffer,
    encode_event,
    parse_client,
)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            '{"type":"session.update","input_sample_rate":8000,"output_sample_rate":48000}',
            SessionUpdate(8000, 48000),
        ),
        ('{"type":"session.update","system_prompt":"be a pirate"}', SessionUpdate(None, None, "be a pirate")),
        ('{"type":"session.update","profile":"tutoring"}', SessionUpdate(None, None, None, "tutoring")),
        ('{"type":"input_audio.commit"}', InputCommit()),
        ('{"type":"text.input","text":"hi"}', TextInput("hi")),
        ('{"type":"say","text":"hello"}', Say("hello")),
        ('{"type":"ping","id":7}', Ping(7)),
        ('{"type":"playback.position","turn_id":3,"played_s":1.25}', PlaybackPosition(3, 1.25)),
        ('{"type":"session.update","audio":"webrtc"}', SessionUpdate(audio="webrtc")),
        ('{"type":"session.update","voice":"ember"}', SessionUpdate(voice="ember")),
        ('{"type":"webrtc.offer","sdp":"v=0"}', WebRtcOffer("v=0")),
        ('{"type":"playback.position","turn_id":3,"played_s":0}', PlaybackPosition(3, 0.0)),
    ],
)
def test_valid_messages(raw: str, message: object) -> None:
    assert parse_client(raw) == message


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "bad_message"),
        ('{"no_type": 1}', "bad_message"),
        ('{"type": "launch.rocket"}', "unknown_type"),
        ('{"type":"session.update","input_sample_rate":44100}', "unsupported_sample_rate"),
        ('{"type":"session.update","input_sample_rate":"16000"}', "unsupported_sample_rate"),
        ('{"type":"session.update","output_sample_rate":true}', "unsupported_sample_rate"),
        ('{"type":"text.input"}', "bad_field"),
        ('{"type":"say","text":42}', "bad_field"),
        ('{"type":"session.update","voice":7}', "bad_field"),
        ('{"type":"ping","id":[1]}', "bad_field"),
        ('{"type":"playback.position","played_s":1.0}', "bad_field"),
        ('{"type":"playback.position","turn_id":"3","played_s":1.0}', "bad_field"),
        ('{"type":"playback.position","turn_id":true,"played_s":1.0}', "bad_field"),
        ('{"type":"playback.position","turn_id":3,"played_s":-0.5}', "bad_field"),
        ('{"type":"playback.position","turn_id":3,"played_s":NaN}', "bad_field"),
        ('{"type":"playback.position","turn_id":3,"played_s":Infinity}', "bad_field"),
        ('{"type":"playback.position","turn_id":3}', "bad_field"),
        ('{"type":"session.update","audio":"carrier-pigeon"}', "bad_field"),
        ('{"type":"webrtc.offer"}', "bad_field"),
        ('{"type":"say","text":"' + "x" * 70000 + '"}', "message_too_long"),
    ],
)
def test_bad_messages_get_a_code(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client(raw)
    assert info.value.code == code
    assert info.value.message  # a sentence a developer can act on


def test_every_event_has_a_wire_type_and_round_trips_as_json() -> None:
    classes = typing.get_args(events.Event)
    assert len(classes) == 14
    seen = set()
    for cls in classes:
        kwargs = {}
        for f in dataclasses.fields(cls):
            kwargs[f.name] = {"int": 1, "float": 1.5, "str": "x", "bool": False}.get(str(f.type), {})
        wire = json.loads(encode_event(cls(**kwargs)))
        assert wire["turn_id"] == 1
        seen.add(wire["type"])
    assert len(seen) == len(classes)
