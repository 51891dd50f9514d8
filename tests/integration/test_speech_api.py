"""The REST speech API and the speaker library against a real server, with the real ``openai`` SDK as
the client where OpenAI defines the route: speech for every voice that Whisper understands, streamed,
in every format; enrolment from real reference speakers; every bad input with its status; and a
conversation that changes voice mid-session."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import openai
import pytest
import soxr

from agent.config import Settings
from agent.engines import load_asr
from agent.voices.embedding import cosine, shared_encoder
from agent.voices.library import BUILTIN
from streaming.devtools.client import VoiceClient
from streaming.devtools.references import SENTENCES, flite, have_flite
from streaming.devtools.ttsbench import get_json, post_form, post_json, wav_bytes
from streaming.encoders import decode_audio
from tests.integration.conftest import Server, start_server
from tests.integration.test_voices import MAX_WER
from tests.support import wer

pytestmark = pytest.mark.integration

needs_flite = pytest.mark.skipif(not have_flite(), reason="needs Debian's flite (apt-get install flite)")
HELD_OUT = " ".join(SENTENCES[12:16])  # never used to fit a voice (agent/voices/enrol.py)


@pytest.fixture(scope="module")
def speech_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    voices = tmp_path_factory.mktemp("voices")
    s = start_server(
        "--tts-voices-dir", str(voices), "--llm-model", "smollm2", "--tts-max-speech-requests", "2"
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(speech_server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=speech_server.http + "/v1", api_key="not-checked", max_retries=0)


def _speech(client: openai.OpenAI, text: str, voice: str, fmt: str = "wav") -> tuple[np.ndarray, int]:
    response = client.audio.speech.create(model="tts-1", voice=voice, input=text, response_format=fmt)  # type: ignore[arg-type]
    if fmt == "pcm":
        return np.frombuffer(response.content, "<i2").astype(np.float32) / 32768.0, 24000
    return decode_audio(response.content, 600)


def _embed(audio: np.ndarray, rate: int) -> np.ndarray:
    return shared_encoder().embed(audio, rate)


def test_every_builtin_voice_says_what_it_was_given(speech_server: Server, client: openai.OpenAI) -> None:
    asr = load_asr(Settings())
    voices = [v for v in get_json(speech_server.http + "/v1/voices")["data"] if v["builtin"]]
    assert {v["id"] for v in voices} >= {v.id for v in BUILTIN if v.engine == "hibari"}
    for voice in voices:
        audio, rate = _speech(client, HELD_OUT, voice["id"])
        text = asr.transcribe(np.asarray(soxr.resample(audio, rate, 16000), np.float32), final=True).text
        assert wer(HELD_OUT, text) <= MAX_WER[voice["engine"]], (voice["id"], text)


def test_a_long_input_streams_its_first_bytes_before_the_rest_is_made(client: openai.OpenAI) -> None:
    text = " ".join(SENTENCES) + " " + " ".join(SENTENCES[:7])
    assert 900 < len(text) <= 1000
    arrivals = []
    started = time.perf_counter()
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="heart", input=text, response_format="pcm"
    ) as response:
        assert response.headers["content-type"] == "audio/pcm"
        for chunk in response.iter_bytes():
            arrivals.append((time.perf_counter() - started, len(chunk)))
    first_s, last_s = arrivals[0][0], arrivals[-1][0]
    audio_s = sum(n for _, n in arrivals) / 2 / 24000
    assert audio_s > 40  # ~22 sentences
    assert first_s < last_s / 3, (first_s, last_s)  # the first sentence left long before the last


def test_every_format_carries_the_same_speech(client: openai.OpenAI) -> None:
    reference, rate = _speech(client, SENTENCES[0], "ember", "wav")
    seconds = len(reference) / rate
    for fmt in ("mp3", "opus", "aac", "flac", "pcm"):
        audio, r = _speech(client, SENTENCES[0], "ember", fmt)
        assert abs(len(audio) / r - seconds) < 0.12, fmt  # codec padding at most
        assert cosine(_embed(audio, r), _embed(reference, rate)) > 0.9, fmt


def test_openai_voice_names_and_the_speaker_id_alias_speak(
    speech_server: Server, client: openai.OpenAI
) -> None:
    onyx = _embed(*_speech(client, HELD_OUT, "onyx"))
    basalt = _embed(*_speech(client, HELD_OUT, "basalt"))
    assert cosine(onyx, basalt) > 0.95  # onyx is documented to speak in basalt
    status, body = post_json(
        speech_server.http + "/v1/audio/speech", {"input": HELD_OUT, "speaker_id": "pip"}
    )
    assert status == 200
    pip = _embed(*decode_audio(body, 60))  # mp3, OpenAI's default format
    assert cosine(pip, _embed(*_speech(client, HELD_OUT, "pip"))) > 0.95
    assert cosine(pip, basalt) < 0.8


def _open_speech(server: Server, text: str, speed: float = 1.0) -> http.client.HTTPConnection:
    """A speech request whose answer is left unread (its headers only), from a socket with a small
    receive buffer: the server can hand over only so much of an answer nobody reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # before connect: no autotuning
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server.port))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.sock = sock
    conn.request(
        "POST",
        "/v1/audio/speech",
        json.dumps({"input": text, "response_format": "pcm", "speed": speed}),
        {"content-type": "application/json"},
    )
    return conn


def test_too_many_at_once_get_429_and_abandoned_requests_give_their_slot_back(speech_server: Server) -> None:
    long_text = " ".join(SENTENCES) + " " + " ".join(SENTENCES[:7])
    # At half speed each answer is ~5 MB of PCM: more than a socket holds (4 MB at most for the
    # server's send buffer, 64 KB for the client's), so an unread answer keeps its slot.
    held = [_open_speech(speech_server, long_text, speed=0.5) for _ in range(2)]
    assert all(c.getresponse().status == 200 for c in held)  # the first sentence is out
    status, body = post_json(speech_server.http + "/v1/audio/speech", {"input": "One more."})
    assert (status, json.loads(body)["error"]["code"]) == (429, "too_many_requests")
    for conn in held:
        conn.close()  # the listener hangs up mid-answer
    for _ in range(4):  # clients that leave before reading anything
        _open_speech(speech_server, long_text).close()
    deadline = time.monotonic() + 20
    while (status := post_json(speech_server.http + "/v1/audio/speech", {"input": "Back."})[0]) == 429:
        assert time.monotonic() < deadline, "the slots were never given back"
        time.sleep(0.2)
    assert status == 200


def test_bad_speech_requests_get_their_status_and_the_reason(speech_server: Server) -> None:
    url = speech_server.http + "/v1/audio/speech"
    cases = [
        ({"input": "x" * 1001}, 413, "text_too_long"),
        ({"input": "Hello.", "voice": "nobody"}, 422, "bad_voice"),
        ({"input": "Hello.", "speed": 4.0}, 422, "bad_field"),
        ({"input": "   "}, 422, "empty_text"),
        ({"input": "Hello.", "response_format": "ogg"}, 422, "bad_field"),
        ({"voice": "heart"}, 422, "bad_field"),
    ]
    for payload, status, code in cases:
        got, body = post_json(url, payload)
        error = json.loads(body)["error"]
        assert (got, error["code"]) == (status, code), payload
        if code == "bad_voice":
            assert "heart" in error["message"]  # names the voices there are
    got, _ = post_json(url, {"input": "Still serving after all that."})
    assert got == 200


@needs_flite
def test_an_enrolled_voice_sounds_closer_to_its_speaker_than_the_base_voice(
    speech_server: Server, client: openai.OpenAI
) -> None:
    fit_text = " ".join(SENTENCES[:8])
    heldout_ref, heldout_rate = flite(HELD_OUT, "awb")
    target = _embed(heldout_ref, heldout_rate)
    ref_audio, ref_rate = flite(fit_text, "awb")
    # OpenAI's custom-voice route, through the SDK
    created = client.audio.voices.create(
        audio_sample=("awb.wav", wav_bytes(ref_audio, ref_rate), "audio/wav"),
        name="Awb Like",
        consent="recorded-ok",
    )
    assert (created.id, created.object, created.type) == ("awb-like", "audio.voice", "audio_sample")
    listed = get_json(speech_server.http + "/v1/voices")
    record = next(v for v in listed["data"] if v["id"] == "awb-like")
    assert record["consent"] == "recorded-ok" and not record["builtin"]
    enrolled = cosine(_embed(*_speech(client, HELD_OUT, "awb-like")), target)
    base = cosine(_embed(*_speech(client, HELD_OUT, "heart")), target)
    assert enrolled > base + 0.08, (enrolled, base)  # measured ~0.69 against ~0.52
    deleted = client.audio.voices.delete("awb-like")
    assert deleted.deleted
    with pytest.raises(openai.UnprocessableEntityError):
        _speech(client, "Gone.", "awb-like")


def test_a_derived_voice_is_recovered_from_its_own_speech(
    speech_server: Server, client: openai.OpenAI
) -> None:
    reference, rate = _speech(client, " ".join(SENTENCES[:8]), "basalt")
    status, voice = post_form(
        speech_server.http + "/v1/voices",
        {"name": "Basalt Copy", "id": "basalt-copy"},
        {"audio": ("b.wav", wav_bytes(reference, rate))},
    )
    assert status == 201, voice
    target = _embed(*_speech(client, HELD_OUT, "basalt"))
    copy = cosine(_embed(*_speech(client, HELD_OUT, "basalt-copy")), target)
    base = cosine(_embed(*_speech(client, HELD_OUT, "heart")), target)
    assert copy > base + 0.1, (copy, base)
    status, again = post_form(
        speech_server.http + "/v1/voices",
        {"name": "Basalt Copy", "id": "basalt-copy"},
        {"audio": ("b.wav", wav_bytes(reference, rate))},
    )
    assert (status, again["error"]["code"]) == (409, "voice_exists")


@needs_flite
def test_bad_references_are_refused_with_the_reason(speech_server: Server) -> None:
    url = speech_server.http + "/v1/voices"
    speech, rate = flite(" ".join(SENTENCES[:8]), "kal")
    other, other_rate = flite(" ".join(SENTENCES[:8]), "slt")
    two = np.concatenate(
        [speech[: len(speech) // 2], soxr.resample(other, other_rate, rate)[: len(speech) // 2]]
    )
    loud = np.clip(speech * 40.0, -1.0, 1.0)
    cases = [
        (wav_bytes(speech[: 2 * rate], rate), "reference_too_short"),
        (wav_bytes(np.zeros(10 * rate, np.float32), rate), "reference_silent"),
        (wav_bytes(loud, rate), "reference_clipped"),
        (wav_bytes(two.astype(np.float32), rate), "reference_multi_speaker"),
        (b"this is not audio at all" * 100, "bad_reference"),
    ]
    for data, code in cases:
        status, body = post_form(url, {"name": "Someone"}, {"audio": ("ref.wav", data)})
        assert (status, body["error"]["code"]) == (422, code), body
    status, body = post_form(url, {"name": "Someone"}, {})
    assert (status, body["error"]["code"]) == (422, "bad_form")
    for voice, code in (("heart", 409), ("nobody", 404)):
        request = urllib.request.Request(f"{url}/{voice}", method="DELETE")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == code


def _voice_embedding(server: Server, voice: str) -> np.ndarray:
    return np.asarray(get_json(f"{server.http}/v1/voices/{voice}")["embedding"], np.float32)


async def test_a_conversation_changes_voice_and_the_next_reply_speaks_in_it(speech_server: Server) -> None:
    heart = await asyncio.to_thread(_voice_embedding, speech_server, "heart")
    basalt = await asyncio.to_thread(_voice_embedding, speech_server, "basalt")
    async with VoiceClient(speech_server.ws) as c:
        assert "basalt" in c.ready["voices"] and c.ready["voice"] == "heart"
        replies = []
        for voice in (None, "basalt"):
            if voice is not None:
                await c.send_json({"type": "session.update", "voice": voice})
            mark = c.mark
            await c.send_json({"type": "say", "text": " ".join(SENTENCES[4:8])})
            await c.wait_for("response.done", timeout_s=60, since=mark)
            replies.append(_embed(c.received_audio(mark).astype(np.float32) / 32768.0, c.output_rate))
        await c.send_json({"type": "session.update", "voice": "nobody"})
        error = await c.wait_for("error", timeout_s=10)
        assert error["code"] == "bad_voice"
    first, second = replies
    assert cosine(first, heart) > cosine(first, basalt)
    assert cosine(second, basalt) > cosine(second, heart)
    assert cosine(second, basalt) > 0.85
