"""The protocol codecs, pure: what each wire message means to a session, and what each output
becomes on the wire. No socket, no loop, no model."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from agent.config import Settings
from agent.errors import VoxloopError
from agent.events import (
    AudioClear,
    AudioFrame,
    CommitIn,
    ConfigureIn,
    DtmfIn,
    PlaybackIn,
    ResponseAudioDone,
    SessionReady,
    TextIn,
)
from streaming.connection import HangUp, OpenAudio, Reply, RtcAnswer, RtcOffer, WireAudio
from streaming.protocols.phone import MARK_EVERY_S, PHONE_RATE, PhoneCodec
from streaming.protocols.twilio import TwilioSerializer
from tests.unit.test_twilio import DTMF, MEDIA, START, STOP


def _frame(turn_id: int, rate: int = PHONE_RATE, value: int = 1000) -> AudioFrame:
    return AudioFrame(turn_id, np.full(rate // 50, value, np.int16), rate, 0)


# -- voxloop protocol v1 --------------------------------------------------------------------------
def test_the_first_update_opens_the_session_and_later_ones_only_configure() -> None:
    from streaming.protocols.voxloop import VoxloopCodec

    codec = VoxloopCodec()
    with pytest.raises(VoxloopError) as e:
        codec.decode(b"\x00\x00")
    assert e.value.code == "audio_before_config"
    with pytest.raises(VoxloopError) as e:
        codec.decode(json.dumps({"type": "session.update", "profile": "karaoke"}))
    assert e.value.code == "unknown_profile" and codec.opened is None  # nothing half-open
    opened, configure = codec.decode(json.dumps({"type": "session.update", "input_sample_rate": 8000}))
    assert opened == OpenAudio(8000, 24000, "websocket") and isinstance(configure, ConfigureIn)
    (again,) = codec.decode(json.dumps({"type": "session.update", "profile": "tutoring"}))
    assert again == ConfigureIn(again.options) and again.options.profile == "tutoring"
    with pytest.raises(VoxloopError) as e:
        codec.decode(json.dumps({"type": "session.update", "output_sample_rate": 16000}))
    assert e.value.code == "already_configured"
    (audio,) = codec.decode(b"\x01\x00\x02\x00")
    assert isinstance(audio, WireAudio) and audio.pcm.tolist() == [1, 2]
    assert codec.decode(json.dumps({"type": "say", "text": "Hi."})) == [TextIn("Hi.", verbatim=True)]
    assert codec.decode(json.dumps({"type": "input_audio.commit"})) == [CommitIn()]
    (pong,) = codec.decode(json.dumps({"type": "ping", "id": 7}))
    assert isinstance(pong, Reply) and json.loads(pong.message) == {"type": "pong", "id": 7}
    with pytest.raises(VoxloopError) as e:
        codec.decode(json.dumps({"type": "webrtc.offer", "sdp": "v=0"}))
    assert e.value.code == "not_webrtc"


def test_the_wire_gets_the_sessions_outputs_with_the_rates_it_speaks() -> None:
    from streaming.protocols.voxloop import VoxloopCodec

    codec = VoxloopCodec()
    codec.decode(
        json.dumps({"type": "session.update", "input_sample_rate": 48000, "output_sample_rate": 16000})
    )
    (ready,) = codec.encode(SessionReady(0, "s1", 0, 0, {"asr": "x"}, "conversation"))
    assert json.loads(ready.message)["input_sample_rate"] == 48000 and not ready.audio
    assert json.loads(ready.message)["output_sample_rate"] == 16000
    (audio,) = codec.encode(_frame(1, 16000))
    assert audio.audio and audio.message == np.full(320, 1000, "<i2").tobytes()
    (clear,) = codec.encode(AudioClear(1))
    assert json.loads(clear.message) == {"type": "audio.clear", "turn_id": 1} and not clear.audio
    (answer,) = codec.encode(RtcAnswer("v=0 answer"))
    assert json.loads(answer.message) == {"type": "webrtc.answer", "sdp": "v=0 answer"}


def test_a_webrtc_session_takes_offers_and_refuses_binary_audio() -> None:
    from streaming.protocols.voxloop import VoxloopCodec

    codec = VoxloopCodec()
    opened, _ = codec.decode(json.dumps({"type": "session.update", "audio": "webrtc"}))
    assert opened == OpenAudio(48000, 48000, "webrtc")
    assert codec.decode(json.dumps({"type": "webrtc.offer", "sdp": "v=0"})) == [RtcOffer("v=0")]
    with pytest.raises(VoxloopError) as e:
        codec.decode(b"\x00\x00")
    assert e.value.code == "not_websocket"


# -- a phone call ---------------------------------------------------------------------------------
def _call() -> PhoneCodec:
    codec = PhoneCodec(TwilioSerializer(), Settings.of(phone_greeting="Hello."))
    opened, configure = codec.decode(json.dumps(START))
    assert opened == OpenAudio(PHONE_RATE, PHONE_RATE, "phone", session_id=START["start"]["callSid"])
    assert isinstance(configure, ConfigureIn)
    assert (configure.options.profile, configure.options.greeting) == ("phone", "Hello.")
    return codec


def test_a_calls_custom_parameters_choose_its_profile_and_voice() -> None:
    start = copy.deepcopy(START)
    start["start"]["customParameters"] = {"voice": "ember", "profile": "tutoring"}  # type: ignore[index]
    _, configure = PhoneCodec(TwilioSerializer(), Settings()).decode(json.dumps(start))
    assert isinstance(configure, ConfigureIn)
    assert (configure.options.voice, configure.options.profile) == ("ember", "tutoring")
    _, plain = PhoneCodec(TwilioSerializer(), Settings()).decode(json.dumps(START))
    assert isinstance(plain, ConfigureIn) and plain.options.voice is None  # the server's default


def test_a_call_before_start_is_refused_and_after_start_is_audio_keys_and_a_hang_up() -> None:
    codec = PhoneCodec(TwilioSerializer(), Settings())
    with pytest.raises(VoxloopError) as e:
        codec.decode(json.dumps(MEDIA))
    assert e.value.code == "not_configured" and codec.dropped_messages == 1
    codec = _call()
    (audio,) = codec.decode(json.dumps(MEDIA))
    assert isinstance(audio, WireAudio) and audio.pcm.dtype == np.int16 and len(audio.pcm) == 54
    assert codec.decode(json.dumps(DTMF)) == [DtmfIn("1")]
    assert codec.decode(json.dumps(STOP)) == [HangUp()]


def test_agent_audio_becomes_media_with_marks_of_its_own_turn() -> None:
    codec = _call()
    per_mark = round(MARK_EVERY_S * 50)  # frames between marks
    wire = [out for _ in range(per_mark) for out in codec.encode(_frame(3))]
    events = [json.loads(o.message) for o in wire]
    assert [e["event"] for e in events] == ["media"] * per_mark + ["mark"]
    assert all(o.audio for o in wire[:-1]) and not wire[-1].audio  # a mark is never dropped
    assert events[-1]["mark"]["name"] == f"3:{per_mark * 160}"
    # The echo of that mark is where the caller is in turn 3; a mark of another turn is stale.
    echoed = {**START, "event": "mark", "mark": {"name": f"3:{per_mark * 160}"}}
    assert codec.decode(json.dumps(echoed)) == [PlaybackIn(3, per_mark * 160 / PHONE_RATE)]
    stale = {**echoed, "mark": {"name": "2:160"}}
    assert codec.decode(json.dumps(stale)) == []
    # One more frame, then the reply's end: a final mark for what was sent after the last one.
    codec.encode(_frame(3))
    (final,) = codec.encode(ResponseAudioDone(3, 1.0))
    assert json.loads(final.message)["mark"]["name"] == f"3:{(per_mark + 1) * 160}"
    # Barge-in: clear, and marks that come back for the cleared turn no longer count.
    (clear,) = codec.encode(AudioClear(3))
    assert json.loads(clear.message) == {"event": "clear", "streamSid": START["streamSid"]}
    assert codec.decode(json.dumps(echoed)) == []
    with pytest.raises(VoxloopError):
        codec.decode(json.dumps({**echoed, "mark": {"name": "not ours"}}))
