"""Audio over WebRTC (aiortc on both ends, signalled on the session's WebSocket) with the real models.

The client is streaming/client.py with ``audio="webrtc"``: Opus both ways, 20 ms frames in real time.
The browser side of the same path is tested in tests/browser/.
"""

from __future__ import annotations

import json
import time

import numpy as np
from websockets.asyncio.client import connect

from agent.audio import peak_dbfs
from streaming.devtools.client import VoiceClient
from tests.integration.conftest import Server
from tests.integration.test_barge_in import LONG_LINE, silence_until
from tests.support import utterance, wer


async def test_a_turn_over_webrtc_is_transcribed_answered_and_heard(server: Server) -> None:
    async with VoiceClient(server.ws, audio="webrtc") as client:
        assert client.ready["input_sample_rate"] == client.ready["output_sample_rate"] == 48000
        await client.stream(np.zeros(8000, np.int16))
        result = await client.turn(utterance("What is the capital of France?"), timeout_s=60)
    assert wer("What is the capital of France?", result.transcript) <= 0.25, result.transcript
    assert result.reply_text and not result.interrupted
    assert result.v2v_s is not None and 0 < result.v2v_s < 5, result.v2v_s
    assert peak_dbfs(result.audio) > -30  # the agent's voice came back through Opus


async def test_barge_in_over_webrtc_empties_the_track_at_once(server: Server) -> None:
    async with VoiceClient(server.ws, audio="webrtc") as client:
        await client.stream(np.zeros(8000, np.int16))
        await client.send_json({"type": "say", "text": LONG_LINE})
        await silence_until(client, lambda: client.first("response.audio.started", turn_id=1) is not None)
        await client.stream(np.zeros(24000, np.int16))
        mark = len(client._inbox)
        speech = utterance("Wait, what is the capital of Italy?")
        first_loud = int(np.nonzero(np.abs(speech.astype(np.int32)) > 328)[0][0])  # -40 dBFS
        talk_at = time.monotonic() + first_loud / 16000
        await client.stream(speech)
        await silence_until(client, lambda: client.first("audio.clear") is not None, 20)
        clear = client.first("audio.clear")
        assert clear is not None and clear["turn_id"] == 1
        await silence_until(client, lambda: client.first("response.audio.started", turn_id=2) is not None, 30)
        received = client._inbox[mark:]
    # The agent went quiet soon after the user started talking over it, and stayed quiet until its
    # next reply: nothing queued in the track kept playing (what is left is the network and the
    # receiving jitter buffer).
    new_reply = next(r.at for r in received if r.message and r.message["type"] == "response.audio.started")
    loud = [r.at for r in received if r.pcm is not None and r.at < new_reply and peak_dbfs(r.pcm) > -40]
    assert loud, "the agent was not audible when the user started talking"
    stop_s = max(loud) - talk_at
    assert 0 < stop_s < 0.5, stop_s
    done = client.first("response.done", turn_id=1)
    assert done is not None and done["interrupted"] and LONG_LINE.startswith(done["text"])


async def test_webrtc_signalling_errors_are_reported(server: Server) -> None:
    async with connect(server.ws) as ws:
        await ws.send(json.dumps({"type": "session.update"}))  # a WebSocket-audio session
        json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "webrtc.offer", "sdp": "v=0"}))
        assert json.loads(await ws.recv())["code"] == "not_webrtc"
    async with connect(server.ws) as ws:
        await ws.send(json.dumps({"type": "session.update", "audio": "webrtc"}))
        json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "webrtc.offer", "sdp": "not an sdp"}))
        assert json.loads(await ws.recv())["code"] == "bad_sdp"
        await ws.send(b"\x00\x00" * 320)  # PCM frames on a WebRTC session
        assert json.loads(await ws.recv())["code"] == "not_websocket"
        await ws.send(json.dumps({"type": "session.update", "audio": "pigeon"}))
        assert json.loads(await ws.recv())["code"] == "bad_field"
