"""Twilio Media Streams messages, golden: shaped as the examples in Twilio's documentation.

Documentation pages (field names, nesting and value types below follow their examples):
- "Media Streams - WebSocket Messages": https://www.twilio.com/docs/voice/media-streams/websocket-messages
- "TwiML Voice: <Stream>": https://www.twilio.com/docs/voice/twiml/stream
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from agent.errors import ProtocolError
from streaming.codecs import mulaw_decode, mulaw_encode
from streaming.protocols.twilio import (
    Connected,
    Dtmf,
    MarkPlayed,
    Media,
    Started,
    Stopped,
    TwilioSerializer,
    twiml_connect,
)

T = TwilioSerializer()
SID = "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"

# Twilio -> server, as documented (WebSocket Messages: "Connected", "Start", "Media", "Mark", "DTMF", "Stop").
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "streamSid": SID,
        "callSid": "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"},
    },
    "streamSid": SID,
}
MEDIA = {
    "event": "media",
    "sequenceNumber": "3",
    "media": {
        "track": "inbound",
        "chunk": "1",
        "timestamp": "5",
        "payload": "no+JhoaJjpzSHxAKBgYJDhtEopGKh4aIjZm7JhQMCAYIDBc1qZaMiIaHi5SsLBcOCQcHCxIp",
    },
    "streamSid": SID,
}
MARK = {"event": "mark", "sequenceNumber": "4", "streamSid": SID, "mark": {"name": "my label"}}
DTMF = {
    "event": "dtmf",
    "streamSid": SID,
    "sequenceNumber": "5",
    "dtmf": {"track": "inbound_track", "digit": "1"},
}
STOP = {
    "event": "stop",
    "sequenceNumber": "5",
    "stop": {
        "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "callSid": "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    },
    "streamSid": SID,
}


def test_the_documented_messages_from_twilio_parse() -> None:
    assert T.parse(json.dumps(CONNECTED)) == Connected("Call")
    started = T.parse(json.dumps(START))
    assert started == Started(
        SID,
        "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "audio/x-mulaw",
        8000,
        1,
        {"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"},
    )
    media = T.parse(json.dumps(MEDIA))
    assert isinstance(media, Media) and len(media.payload) == 54 and media.timestamp_ms == 5
    assert T.parse(json.dumps(MARK)) == MarkPlayed("my label")
    assert T.parse(json.dumps(DTMF)) == Dtmf("1")
    assert T.parse(json.dumps(STOP)) == Stopped()


def test_the_server_messages_are_the_documented_ones() -> None:
    # "Send a media message", "Send a mark message", "Send a clear message".
    assert json.loads(T.media(SID, b"\xff\x7f")) == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": "/38="},
    }
    assert json.loads(T.mark(SID, "my label")) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": "my label"},
    }
    assert json.loads(T.clear(SID)) == {"event": "clear", "streamSid": SID}


def test_twiml_connects_the_call_to_the_stream() -> None:
    assert twiml_connect("wss://example.com/twilio/media", {"profile": "phone"}) == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        '<Stream url="wss://example.com/twilio/media"><Parameter name="profile" value="phone" /></Stream>'
        "</Connect></Response>"
    )


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "invalid_json"),
        ('{"no": "event"}', "bad_message"),
        ('{"event": "launch"}', "unknown_type"),
        ('{"event": "media", "media": {"payload": "@@@"}}', "bad_audio_frame"),
        ('{"event": "media", "media": {"payload": ""}}', "bad_audio_frame"),
        ('{"event": "media", "media": {"payload": "' + "A" * 12000 + '"}}', "audio_frame_too_long"),
        ('{"event": "media"}', "bad_field"),
        ('{"event": "start", "start": {"streamSid": "MZ1"}}', "bad_field"),
        ('{"event": "dtmf", "dtmf": {"digit": "x"}}', "bad_field"),
    ],
)
def test_bad_messages_get_a_code(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        T.parse(raw)
    assert info.value.code == code


def test_mu_law_is_the_g711_reference() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # the C reference, in the standard library until Python 3.13

        every = np.arange(-32768, 32768, dtype=np.int16)
        assert mulaw_encode(every) == audioop.lin2ulaw(every.tobytes(), 2)
        codes = bytes(range(256))
        assert mulaw_decode(codes).tobytes() == audioop.ulaw2lin(codes, 2)
