"""voxloop speaking through an external GPT-SoVITS server (a stand-in implementing api_v2's routes):
configured by a voice record alone, streamed, in a conversation too; the server's errors are
reported and every other voice keeps working."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soxr

from agent.config import Settings
from agent.engines import load_asr
from agent.voices.embedding import cosine, shared_encoder
from streaming.devtools.client import VoiceClient
from streaming.devtools.references import SENTENCES, flite, have_flite, wer
from streaming.devtools.ttsbench import get_json, post_json
from streaming.encoders import decode_audio
from tests.integration.conftest import Server, start_server
from tests.integration.fake_gpt_sovits import FakeGptSovits

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not have_flite(), reason="the stand-in speaks with Debian's flite (apt-get install flite)"
    ),
]

TEXT = " ".join(SENTENCES[12:14])


def _record(voices: Path, voice_id: str, ref: str) -> None:
    record = {
        "version": 1,
        "id": voice_id,
        "name": voice_id.title(),
        "engine": "gpt-sovits",
        "model": "gpt-sovits",
        "params": {"ref_audio_path": f"refs/{ref}.wav", "prompt_text": "A reference.", "prompt_lang": "en"},
    }
    (voices / f"{voice_id}.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def sovits() -> Iterator[FakeGptSovits]:
    with FakeGptSovits() as fake:
        yield fake


@pytest.fixture(scope="module")
def sovits_server(
    sovits: FakeGptSovits, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    voices = tmp_path_factory.mktemp("voices")
    s = start_server(
        "--tts-voices-dir", str(voices), "--tts-gpt-sovits-url", sovits.url, "--llm-model", "smollm2"
    )
    yield s, voices
    s.stop()


def test_a_voice_record_is_all_it_takes_and_the_speech_streams_back(
    sovits: FakeGptSovits, sovits_server: tuple[Server, Path]
) -> None:
    server, voices = sovits_server
    _record(voices, "narrator", "awb")  # added while the server runs: no restart
    listed = {v["id"]: v for v in get_json(server.http + "/v1/voices")["data"]}
    assert listed["narrator"]["engine"] == "gpt-sovits"
    status, body = post_json(
        server.http + "/v1/audio/speech", {"input": TEXT, "voice": "narrator", "response_format": "wav"}
    )
    assert status == 200
    audio, rate = decode_audio(body, 60)
    sent = sovits.requests[-1]
    assert (
        sent["text"] == TEXT and sent["ref_audio_path"] == "refs/awb.wav" and sent["streaming_mode"] is True
    )
    heard = load_asr(Settings()).transcribe(
        np.asarray(soxr.resample(audio, rate, 16000), np.float32), final=True
    )
    assert wer(TEXT, heard.text) <= 0.35, heard.text  # flite's robotic voice through Whisper tiny.en
    assert cosine(shared_encoder().embed(audio, rate), shared_encoder().embed(*flite(TEXT, "awb"))) > 0.9


def test_the_servers_refusal_is_reported_and_other_voices_keep_working(
    sovits_server: tuple[Server, Path],
) -> None:
    server, voices = sovits_server
    _record(voices, "lost", "nobody")  # the stand-in has no such reference: HTTP 400
    status, body = post_json(server.http + "/v1/audio/speech", {"input": "Hello.", "voice": "lost"})
    error = json.loads(body)["error"]
    assert status == 500 and error["code"] == "tts_failed" and "not found" in error["message"], error
    status, _ = post_json(server.http + "/v1/audio/speech", {"input": "Hello.", "voice": "heart"})
    assert status == 200


async def test_a_conversation_speaks_through_the_external_server(sovits_server: tuple[Server, Path]) -> None:
    server, voices = sovits_server
    _record(voices, "caller", "slt")
    async with VoiceClient(server.ws) as c:
        await c.send_json({"type": "session.update", "voice": "caller"})
        mark = c.mark
        await c.send_json({"type": "say", "text": TEXT})
        await c.wait_for("response.done", timeout_s=60, since=mark)
        audio = c.received_audio(mark).astype(np.float32) / 32768.0
    assert len(audio) / c.output_rate > 2.0
    assert (
        cosine(shared_encoder().embed(audio, c.output_rate), shared_encoder().embed(*flite(TEXT, "slt")))
        > 0.85
    )
