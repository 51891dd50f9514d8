"""The OpenAI Realtime API against a real server, with the official ``openai`` SDK's realtime client
as the client: a spoken question streamed in real time, a text item answered on response.create,
response.cancel, and every bad input answered with an ``error`` while the connection goes on."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import openai
import pytest
import websockets
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from agent.config import Settings
from agent.engines import load_asr, load_tts
from streaming.devtools.bench import speech
from tests.integration.conftest import Server, start_server
from tests.support import wer

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def realtime_server() -> Iterator[Server]:
    s = start_server("--llm-model", "smollm2")
    yield s
    s.stop()


def _client(server: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="not-checked", websocket_base_url=f"ws://127.0.0.1:{server.port}/v1", max_retries=0
    )


async def _until(conn: AsyncRealtimeConnection, kind: str, seen: list[Any], timeout_s: float = 60) -> Any:
    """Events up to and including the first of ``kind`` (all kept in ``seen``)."""
    async with asyncio.timeout(timeout_s):
        while True:
            event = await conn.recv()
            seen.append(event)
            if event.type == kind:
                return event


def _audio_of(events: list[Any]) -> np.ndarray:
    chunks = [base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta"]
    return np.frombuffer(b"".join(chunks), "<i2").astype(np.float32) / 32768.0


async def test_a_spoken_question_gets_vad_events_a_transcript_and_a_spoken_answer(
    realtime_server: Server,
) -> None:
    tts = load_tts(Settings())
    pcm = speech(tts, QUESTION, 24000)
    silence = np.zeros(24000 * 3, np.int16)
    audio = np.concatenate([np.zeros(4800, np.int16), pcm, silence])
    async with _client(realtime_server).realtime.connect(model="voxloop") as conn:
        seen: list[Any] = []
        created = await _until(conn, "session.created", seen)
        assert created.session.audio.output.format.rate == 24000
        frame = 480  # 20 ms at 24 kHz, sent in real time
        started = time.monotonic()
        for i in range(0, len(audio), frame):
            chunk = audio[i : i + frame].astype("<i2").tobytes()
            await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            await asyncio.sleep(max(0.0, started + (i + frame) / 24000 - time.monotonic()))
        done = await _until(conn, "response.done", seen)
    kinds = [e.type for e in seen]
    for kind in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
    ):
        assert kind in kinds, kind
    assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index("response.created")
    transcript = next(e for e in seen if e.type == "conversation.item.input_audio_transcription.completed")
    assert wer(QUESTION, transcript.transcript) <= 0.2
    assert done.response.status == "completed"
    started_ms = next(e for e in seen if e.type == "input_audio_buffer.speech_started").audio_start_ms
    assert 100 <= started_ms <= 400  # the speech starts 200 ms into the buffer
    said = next(e for e in seen if e.type == "response.output_audio_transcript.done").transcript
    heard = load_asr(Settings()).transcribe(_resampled(_audio_of(seen)), final=True).text
    assert said and wer(said, heard) <= 0.35


def _resampled(audio: np.ndarray) -> np.ndarray:
    import soxr

    return soxr.resample(audio, 24000, 16000)


async def test_a_text_item_is_answered_on_response_create_and_cancel_stops_it(
    realtime_server: Server,
) -> None:
    async with _client(realtime_server).realtime.connect(model="voxloop") as conn:
        seen: list[Any] = []
        await _until(conn, "session.created", seen)
        await conn.session.update(
            session={
                "type": "realtime",
                "instructions": "You are brief.",
                "audio": {"output": {"voice": "ember"}},
            }
        )
        updated = await _until(conn, "session.updated", seen)
        assert updated.session.audio.output.voice == "ember"
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Tell me a long story about a dragon."}],
        }
        await conn.conversation.item.create(item=item)  # type: ignore[arg-type]
        await _until(conn, "conversation.item.added", seen)
        await conn.response.create()
        await _until(conn, "response.output_audio.delta", seen)
        await conn.response.create(event_id="second")  # one is active
        error = await _until(conn, "error", seen)
        assert error.error.code == "conversation_already_has_active_response"
        assert error.error.event_id == "second"
        await conn.response.cancel()
        cancelled_at = len(seen)
        done = await _until(conn, "response.done", seen)
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "client_cancelled"
        after = _audio_of(seen[cancelled_at:])
        assert len(after) / 24000 < 0.5  # audio stops at once (what was already paced out aside)
        # the conversation goes on: another item, another answer
        item["content"] = [{"type": "input_text", "text": "Say hello."}]
        await conn.conversation.item.create(item=item)  # type: ignore[arg-type]
        await conn.response.create()
        done = await _until(conn, "response.done", seen)
        assert done.response.status == "completed"


async def test_bad_input_gets_an_error_and_the_connection_goes_on(realtime_server: Server) -> None:
    async with _client(realtime_server).realtime.connect(model="voxloop") as conn:
        seen: list[Any] = []
        await _until(conn, "session.created", seen)
        truncate = {
            "type": "conversation.item.truncate",
            "item_id": "nope",
            "content_index": 0,
            "audio_end_ms": 5,
        }
        wrong_rate = {"type": "audio/pcm", "rate": 16000}
        update = {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"format": wrong_rate}}},
        }
        odd = {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()}
        cases: list[tuple[str, str]] = [
            ("{not json", "invalid_json"),
            (json.dumps({"type": "no.such.event", "event_id": "e1"}), "unknown_event"),
            (
                json.dumps({"type": "input_audio_buffer.append", "audio": "@@not base64", "event_id": "e2"}),
                "invalid_base64",
            ),
            (json.dumps(odd), "bad_audio_frame"),
            (json.dumps(truncate), "item_not_found"),
            (json.dumps(update), "bad_field"),
            (json.dumps({"type": "response.create"}), "unsupported_value"),
            (json.dumps({"type": "conversation.item.delete", "item_id": "x"}), "unsupported_event"),
        ]
        for raw, code in cases:
            await conn.send_raw(raw)
            error = await _until(conn, "error", seen, timeout_s=10)
            assert error.error.code == code, raw
        assert error.error.event_id is None
        assert [e.error.event_id for e in seen if e.type == "error"][1:3] == ["e1", "e2"]
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello."}]}
        await conn.conversation.item.create(item=item)  # type: ignore[arg-type]
        await conn.response.create()
        done = await _until(conn, "response.done", seen)
        assert done.response.status == "completed"


async def test_with_keys_configured_only_a_client_with_one_gets_in() -> None:
    server = start_server("--llm-model", "smollm2", "--api-keys", "k-one, k-two")
    try:
        for key, admitted in (("k-two", True), ("wrong", False)):
            client = openai.AsyncOpenAI(
                api_key=key, websocket_base_url=f"ws://127.0.0.1:{server.port}/v1", max_retries=0
            )
            if admitted:
                async with client.realtime.connect(model="voxloop") as conn:
                    assert (await conn.recv()).type == "session.created"
            else:
                with pytest.raises(websockets.exceptions.InvalidStatus, match="403"):
                    async with client.realtime.connect(model="voxloop") as conn:
                        await conn.recv()
    finally:
        server.stop()
