"""Speak to the real server over the WebSocket and hear it answer, with the embedded default models.

WER bound: the embedded ASR is Whisper tiny.en (~13 % WER on synthetic speech per
shared/ENVIRONMENT.md); these short, clear questions must come out with WER <= 0.25 each.
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from agent.events import STAGE_ORDER
from streaming.devtools.client import VoiceClient
from tests.integration.conftest import Server
from tests.support import utterance, wer

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Can you name a fruit that is yellow?",
]
WER_BOUND = 0.25


@pytest.mark.parametrize(("input_rate", "output_rate"), [(16000, 24000), (8000, 48000), (48000, 16000)])
async def test_a_spoken_question_gets_a_spoken_answer(
    server: Server, input_rate: int, output_rate: int
) -> None:
    async with VoiceClient(server.ws, input_rate=input_rate, output_rate=output_rate) as client:
        assert client.ready["input_sample_rate"] == input_rate
        assert client.ready["output_sample_rate"] == output_rate
        assert client.ready["models"]["asr"] == "whisper-tiny.en"
        await client.stream(np.zeros(input_rate // 2, np.int16))  # the mic is open before the user talks
        question = QUESTIONS[[16000, 8000, 48000].index(input_rate)]
        result = await client.turn(utterance(question, input_rate))

    assert wer(question, result.transcript) <= WER_BOUND, result.transcript
    assert any(c.isalpha() for c in result.reply_text), result.reply_text
    assert not result.interrupted and not result.premature
    # Non-silent agent audio, in 20 ms frames at the declared output rate.
    assert set(result.frame_samples) == {output_rate // 50}
    assert np.abs(result.audio.astype(np.int32)).max() > 3000
    done = next(e for e in result.events if e["type"] == "response.audio.done")
    assert abs(len(result.audio) / output_rate - done["duration_s"]) < 0.05
    assert result.v2v_s is not None and 0 < result.v2v_s < 5.0
    # The server's per-stage timeline is present and in order.
    timeline = result.metrics["timeline_ms"]
    assert set(STAGE_ORDER) <= set(timeline)
    stamps = [timeline[k] for k in STAGE_ORDER]
    assert stamps == sorted(stamps), timeline
    assert 0 < timeline["endpoint"] <= timeline["audio_first_sent"], timeline
    assert result.metrics["durations_ms"]["asr"] > 0
    types = [e["type"] for e in result.events]
    order = [
        ("speech.started", "speech.stopped"),
        ("transcript.final", "response.started"),
        ("response.audio.started", "response.done"),
        ("response.done", "turn.metrics"),
    ]
    for earlier, later in order:
        assert types.index(earlier) < types.index(later)


async def test_the_conversation_has_memory(server: Server) -> None:
    async with VoiceClient(server.ws) as client:
        await client.stream(np.zeros(8000, np.int16))
        first = await client.turn(utterance("My name is Alice."))
        second = await client.turn(utterance("What is my name?"))
    assert first.turn_id == 1 and second.turn_id == 2
    assert "alice" in second.reply_text.lower(), second.reply_text


def test_health_and_metrics_answer_over_plain_http(server: Server) -> None:
    with urllib.request.urlopen(server.http + "/healthz", timeout=5) as r:
        health = json.load(r)
    assert health["status"] == "ok" and health["protocol"] == 1
    assert health["peak_rss_mb"] > 100
    with urllib.request.urlopen(server.http + "/metrics", timeout=5) as r:
        assert b"voxloop_sessions_total" in r.read()


async def test_an_utterance_resumed_after_a_pause_gets_one_reply_to_all_of_it(server: Server) -> None:
    """The user pauses mid-sentence for 500 ms: silence onset starts the ASR pass (and maybe a held
    reply) on the first half; the user goes on; exactly one reply comes, to the whole utterance."""
    first, second = "Can you tell me about", "the tallest mountain in the world?"
    speech = np.concatenate([utterance(first), np.zeros(8000, np.int16), utterance(second)])
    async with VoiceClient(server.ws) as client:
        await client.stream(np.zeros(8000, np.int16))
        result = await client.turn(speech)
        await client.stream(np.zeros(16000, np.int16))  # a second of silence: nothing else may come
        later = client.messages(since=0)
    types = [e["type"] for e in later]
    assert types.count("speech.stopped") == 1 and types.count("response.started") == 1
    assert types.count("transcript.final") == 1 and "audio.clear" not in types
    assert wer(f"{first} {second}", result.transcript) <= WER_BOUND, result.transcript
    assert not result.premature and not result.interrupted and result.reply_text


@pytest.mark.parametrize(
    "ask",
    [
        "List twenty things I should pack for a beach holiday.",
        "Give me a numbered list of ten healthy breakfast ideas with details.",
    ],
)
async def test_a_question_that_invites_a_list_gets_a_short_spoken_answer(server: Server, ask: str) -> None:
    """Replies fit speech: a few sentences at most, no markdown read aloud, no word or phrase said
    over and over (the small model loops on lists when nothing stops it)."""
    async with VoiceClient(server.ws) as client:
        await client.send_json({"type": "text.input", "text": ask})
        done = await client.wait_for("response.done", timeout_s=60)
    said = done["text"]
    words = said.lower().replace(",", " ").replace(".", " ").split()
    assert said and not done["interrupted"]
    assert len(words) <= 60, said  # the word cap (max_reply_words)
    assert sum(said.count(end) for end in ".!?") <= 3 + 1, said  # 3 sentences (+1: an abbreviation)
    assert not any(ch in said for ch in "*#`"), said
    assert not any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2)), said
