"""Phone calls against the real server and models: the call simulator speaks Twilio Media Streams.

streaming/phonesim.py sends the real message sequence with 20 ms mu-law 8 kHz media in real time and
plays what comes back the way Twilio does (marks echoed when played, clear drops the buffer).
Media streams carry no transcripts, so what the server heard and said is read from its log, where
every call's side of the conversation goes, with the call id.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import numpy as np

from streaming.devtools.phonesim import PhoneCall
from tests.integration.conftest import Server
from tests.integration.test_barge_in import LONG_LINE
from tests.support import utterance, wer


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.headers["Content-Type"], r.read().decode()


def _media_url(server: Server) -> str:
    return server.ws.replace("/ws", "/twilio/media")


def _log(server: Server, call: PhoneCall, marker: str) -> list[str]:
    return [
        line.split(marker, 1)[1].strip() for line in server.log if call.call_sid in line and marker in line
    ]


async def _wait_log(server: Server, call: PhoneCall, marker: str, timeout_s: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while not (found := _log(server, call, marker)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {marker!r} for {call.call_sid} in the server log")
        await asyncio.sleep(0.1)
    return found


async def test_a_call_is_heard_answered_in_mu_law_and_marks_come_back(server: Server) -> None:
    question = "What is the capital of France?"
    async with PhoneCall(_media_url(server)) as call:
        await call.say(np.zeros(4000, np.int16))
        last = await call.say(utterance(question, 8000))
        await call.silence_until(lambda: call.first_audible(last) is not None)
        await call.silence_until(lambda: bool(_log(server, call, "agent:")), 30)
        await call.say(np.zeros(8000, np.int16))  # let the reply finish playing
        v2v = call.first_audible(last)
    heard = (await _wait_log(server, call, "caller:"))[0]
    assert wer(question, heard) <= 0.25, heard
    assert (await _wait_log(server, call, "agent:"))[0]
    assert v2v is not None and 0 < v2v - last < 5
    media = call.messages("media")
    assert media and all(m["streamSid"] == call.stream_sid for _, m in media)
    assert all(len(m["media"]["payload"]) == 216 for _, m in media)  # 160 bytes of mu-law, base64
    # Marks named <turn>:<samples> follow the media and were echoed once played.
    marks = [m["mark"]["name"] for _, m in call.messages("mark")]
    assert marks and all(name.startswith("1:") for name in marks)
    assert call.marks_echoed[: len(marks)] == marks


async def test_a_caller_cutting_in_gets_clear_and_memory_keeps_what_was_played(server: Server) -> None:
    async with PhoneCall(_media_url(server), parameters={"greeting": LONG_LINE}) as call:
        await call.silence_until(lambda: call.first_audible(0.0) is not None, 30)
        # Synthesised before the clock starts: the test's own TTS blocks its event loop.
        cut_in = utterance("Wait, what is the capital of Italy?", 8000)
        await call.say(np.zeros(16000, np.int16))  # two seconds into the greeting
        talk_at = time.monotonic()
        await call.say(cut_in)
        await call.silence_until(lambda: bool(call.messages("clear")), 20)
        await call.silence_until(lambda: bool(_log(server, call, "agent (interrupted")), 10)
    (clear_at, clear), *_ = call.messages("clear")
    assert clear == {"event": "clear", "streamSid": call.stream_sid}
    # The agent went quiet: no greeting audio arrived between the cut and the clear beyond the pause.
    loud = [t for t, pcm in call.audio(talk_at, clear_at) if np.abs(pcm.astype(np.int32)).max() > 328]
    assert not loud or max(loud) - talk_at < 0.6
    stop_ms = 1000 * (max(loud, default=talk_at) - talk_at)
    print(f"phone barge-in: agent audio stopped {stop_ms:.0f} ms, clear {1000 * (clear_at - talk_at):.0f} ms")
    said = _log(server, call, "agent (interrupted; the caller heard this much):")[0]
    assert said and LONG_LINE.startswith(said) and len(said) < len(LONG_LINE) // 2, said
    print(f"memory kept: {said!r}; marks echoed: {len(call.marks_echoed)}")


async def test_a_caller_over_handset_echo_is_heard_and_answered_and_the_echo_alone_is_not(
    server: Server,
) -> None:
    """The agent's own audio comes back at -6 dB after 100 ms (a short tail), over -60 dBFS line
    noise: server-side echo cancellation removes it, so the echo never interrupts, and a caller who
    talks over it is heard, interrupts and is answered."""
    async with PhoneCall(
        _media_url(server),
        parameters={"greeting": LONG_LINE},
        echo_gain=0.5,
        echo_delay_s=0.1,
        noise_dbfs=-60,
    ) as call:
        await call.silence_until(lambda: call.first_audible(0.0) is not None, 30)
        await call.say(np.zeros(7200, np.int16))  # 0.9 s into the greeting, with its echo coming back
        assert not call.messages("clear")  # the echo alone did not interrupt
        await call.say(utterance("Wait, what is the capital of Italy?", 8000))
        await call.silence_until(lambda: bool(call.messages("clear")), 20)
        await call.silence_until(lambda: bool(_log(server, call, "caller:")), 20)
        await call.silence_until(lambda: bool(_log(server, call, "agent:")), 40)
    heard = _log(server, call, "caller:")
    assert any("italy" in h.lower() for h in heard), heard


async def test_dtmf_reaches_the_session(server: Server) -> None:
    async with PhoneCall(_media_url(server)) as call:
        await call.say(np.zeros(1600, np.int16))
        await call.dtmf("5")
        await call.say(np.zeros(1600, np.int16))
        assert await _wait_log(server, call, "DTMF") == ["5"]


async def test_bad_messages_are_logged_dropped_and_the_server_goes_on(server: Server) -> None:
    async with PhoneCall(_media_url(server)) as early:
        pass  # a clean call, to have a call id in the log
    # Media before start, then garbage of every kind, then a stream that ends without stop.
    from websockets.asyncio.client import connect

    async with connect(_media_url(server)) as ws:
        await ws.send(json.dumps({"event": "media", "media": {"payload": "AAAA"}}))
    async with PhoneCall(_media_url(server)) as call:
        for raw in [
            "not json",
            json.dumps({"event": "media", "media": {"payload": "@@not base64@@"}}),
            json.dumps({"event": "media", "media": {"payload": "A" * 20000}}),
            json.dumps({"event": "launch"}),
            json.dumps({"event": "mark", "mark": {"name": "not ours"}}),
            json.dumps({"event": "dtmf", "dtmf": {"digit": "x"}}),
        ]:
            await call.send_raw(raw)
        last = await call.say(utterance("What is the capital of France?", 8000))
        await call.silence_until(lambda: call.first_audible(last) is not None, 30)
    dropped = [line for line in server.log if call.call_sid in line and "dropped a message" in line]
    codes = {line.split("dropped a message: ", 1)[1].split(":", 1)[0] for line in dropped}
    assert codes >= {"invalid_json", "bad_audio_frame", "audio_frame_too_long", "unknown_type", "bad_field"}
    assert any("before 'start'" in line for line in server.log)
    assert any("without 'stop'" in line for line in server.log)
    assert early.call_sid != call.call_sid
    status, _, body = await asyncio.to_thread(_get, server.http + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_the_incoming_call_webhook_returns_twiml_for_the_stream(server: Server) -> None:
    status, content_type, body = _get(server.http + "/twilio/voice")
    assert status == 200 and content_type == "text/xml"
    assert body == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        f'<Stream url="wss://127.0.0.1:{server.port}/twilio/media"></Stream></Connect></Response>'
    )
