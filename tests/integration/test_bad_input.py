"""Bad input against the real server: each gets an error event with a code, the session goes on, and
nothing else on the server is disturbed (a second session keeps answering)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streaming.devtools.client import VoiceClient
from tests.integration.conftest import Server, start_server
from tests.support import utterance


async def _next_error(ws: object, timeout_s: float = 5.0) -> dict[str, object]:
    async with asyncio.timeout(timeout_s):
        while True:
            msg = await ws.recv()  # type: ignore[attr-defined]
            if isinstance(msg, str) and json.loads(msg)["type"] == "error":
                return json.loads(msg)  # type: ignore[no-any-return]


async def test_before_configuration(server: Server) -> None:
    async with connect(server.ws) as ws:
        await ws.send(b"\x00\x00" * 320)
        assert (await _next_error(ws))["code"] == "audio_before_config"
        await ws.send(json.dumps({"type": "text.input", "text": "hi"}))
        assert (await _next_error(ws))["code"] == "not_configured"
        await ws.send(json.dumps({"type": "session.update", "input_sample_rate": 44100}))
        err = await _next_error(ws)
        assert err["code"] == "unsupported_sample_rate" and "16000" in str(err["message"])
        # ... and the same connection can still be configured properly.
        await ws.send(json.dumps({"type": "session.update", "input_sample_rate": 16000}))
        async with asyncio.timeout(5):
            while json.loads(await ws.recv())["type"] != "session.ready":
                pass


@pytest.mark.parametrize(
    ("send", "code"),
    [
        ("this is not json", "invalid_json"),
        (json.dumps({"type": "launch.rocket"}), "unknown_type"),
        (json.dumps(["type", "ping"]), "bad_message"),
        (b"\x00\x00\x00", "bad_audio_frame"),
        (b"\x00\x00" * 16001, "audio_frame_too_long"),
        (json.dumps({"type": "say", "text": "word " * 300}), "text_too_long"),
        (json.dumps({"type": "session.update", "output_sample_rate": 8000}), "already_configured"),
        (json.dumps({"type": "session.update", "profile": "karaoke"}), "unknown_profile"),
    ],
)
async def test_bad_messages_get_a_coded_error_and_the_session_goes_on(
    server: Server, send: str | bytes, code: str
) -> None:
    async with VoiceClient(server.ws) as client:
        assert client.ws is not None
        await client.ws.send(send)
        err = await client.wait_for("error", timeout_s=5)
        assert err["code"] == code and not err["fatal"] and err["message"]
        # The session is still alive and answering.
        await client.send_json({"type": "say", "text": "Still here."})
        done = await client.wait_for("response.done", timeout_s=10)
        assert done["text"] == "Still here."


async def test_an_oversized_message_closes_only_that_connection(server: Server) -> None:
    async with VoiceClient(server.ws) as other:
        async with connect(server.ws, max_size=None) as ws:
            await ws.send(json.dumps({"type": "session.update"}))
            # The server may close while the 2 MiB are still draining, so the
            # send itself can be what sees the close.
            with pytest.raises(ConnectionClosed) as info:
                await ws.send(b"\x00" * (2 << 20))  # 2 MiB: over the 1 MiB limit
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        # The other session never noticed.
        await other.send_json({"type": "ping", "id": 42})
        await other.wait_for("pong", timeout_s=5, id=42)
        result = await other.turn(utterance("What color is the sky?"))
        assert "sky" in result.transcript.lower() and result.reply_text


@pytest.fixture(scope="module")
def short_server() -> Iterator[Server]:
    """A server with a 2 s utterance limit and the tiny LLM (fast), to test the limit in real time."""
    s = start_server("--max-utterance-s", "2", "--llm-model", "smollm2")
    yield s
    s.stop()


async def test_an_utterance_over_the_limit_is_cut_reported_and_answered(short_server: Server) -> None:
    long_speech = np.concatenate(
        [utterance("I would like to tell you a long story about my summer holiday by the sea."),
         utterance("We went swimming every single day and ate ice cream.")]
    )  # fmt: skip
    async with VoiceClient(short_server.ws) as client:
        result = await client.turn(long_speech)
    started = next(e for e in result.events if e["type"] == "speech.started")
    stopped = next(e for e in result.events if e["type"] == "speech.stopped")
    assert stopped["reason"] == "max_length"
    assert 1.95 <= stopped["audio_s"] - started["audio_s"] <= 2.05
    err = next(e for e in result.events if e["type"] == "error")
    assert err["code"] == "utterance_too_long" and not err["fatal"]
    assert "story" in result.transcript.lower()
    assert result.reply_text or result.interrupted


def test_the_server_kept_count_of_the_errors(server: Server) -> None:
    with urllib.request.urlopen(server.http + "/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'voxloop_errors_by_code_total{code="invalid_json"}' in text


async def test_a_session_chooses_its_turn_taking_profile(server: Server) -> None:
    async with connect(server.ws) as ws:
        await ws.send(json.dumps({"type": "session.update", "profile": "tutoring"}))
        async with asyncio.timeout(5):
            while (ready := json.loads(await ws.recv()))["type"] != "session.ready":
                pass
        assert ready["profile"] == "tutoring"
        await ws.send(json.dumps({"type": "session.update", "profile": "phone"}))  # changes mid-session
        await ws.send(json.dumps({"type": "ping", "id": 1}))
        async with asyncio.timeout(5):
            while (msg := json.loads(await ws.recv()))["type"] != "pong":
                assert msg["type"] != "error", msg
