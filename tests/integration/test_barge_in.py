"""Barge-in against the real server and models over the WebSocket, as a user's client would do it.

(a) a second utterance while the agent speaks stops the agent's audio at the client and is answered;
(b) the agent's own audio fed back into the input at -6 dB, 50-150 ms later (with a room tail), does not
    interrupt it, and a sentence spoken over that echo does, and is answered;
(c) a backchannel said over the agent does not interrupt it, words or not ("okay", "mm-hmm");
(d) memory ends at what was heard: the interrupted reply's text is the heard prefix of what was said;
(e) a barge-in stops the interrupted reply's LLM generation: the next turn does not wait for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from streaming.devtools.client import VoiceClient
from tests.integration.conftest import Server, start_server
from tests.support import utterance

STORY = "Tell me a long story about a brave knight and a dragon."
# A long scripted line (protocol message "say"): the agent is reliably mid-speech when the user talks.
LONG_LINE = (
    "Once upon a time, in a kingdom by the sea, there lived a brave knight named Arthur. "
    "Every morning he rode his white horse along the cliffs, looking out over the water. "
    "One day, a fisherman told him about a dragon that slept in a cave beyond the northern hills, "
    "and Arthur decided to visit it, not to fight, but to ask why it had come."
)
SILENCE_20MS = np.zeros(320, np.int16)


async def silence_until(client: VoiceClient, done: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Keep the microphone open (real-time silence) until ``done()``."""
    await client.hold_silence(done, timeout_s=timeout_s)


async def _agent_talking(client: VoiceClient) -> None:
    await client.stream(np.zeros(8000, np.int16))
    await client.send_json({"type": "say", "text": LONG_LINE})
    await silence_until(client, lambda: client.first("response.audio.started", turn_id=1) is not None)
    await client.stream(np.zeros(24000, np.int16))  # 1.5 s into the agent's speech


async def test_a_second_utterance_stops_the_agent_and_is_answered(server: Server) -> None:
    async with VoiceClient(server.ws) as client:
        await _agent_talking(client)
        mark = len(client._inbox)
        await client.stream(utterance("Wait, what is the capital of Italy?"))
        await silence_until(client, lambda: client.first("response.done", turn_id=2) is not None)
        received = client._inbox[mark:]
    clear_at = next(i for i, r in enumerate(received) if r.message and r.message["type"] == "audio.clear")
    assert received[clear_at].message["turn_id"] == 1  # type: ignore[index]
    new_audio = next(
        i for i, r in enumerate(received) if r.message and r.message["type"] == "response.audio.started"
    )
    # (a) no audio of the interrupted reply arrives after audio.clear: the next frames are turn 2's.
    assert not any(r.pcm is not None for r in received[clear_at:new_audio])
    done1 = client.first("response.done", turn_id=1)
    assert done1 is not None and done1["interrupted"]
    # (d) what memory keeps (the heard text) is a strict prefix of what the agent was saying,
    # ending about where the user cut in (1.5 s of speech + the time to hear "Wait").
    heard = done1["text"]
    assert heard and LONG_LINE.startswith(heard) and len(heard) < len(LONG_LINE) // 2, heard
    assert len(heard.split()) >= 3
    final2 = client.first("transcript.final", turn_id=2)
    assert final2 is not None and "italy" in final2["text"].lower()
    done2 = client.first("response.done", turn_id=2)
    assert done2 is not None and not done2["interrupted"]
    # The client reported its playback position as it played and where it stopped at the clear;
    # the server took every report (no error came back).
    assert client.reports_sent >= 3 and client.first("error") is None


@pytest.mark.parametrize("delay_s", [0.05, 0.15])
async def test_the_agents_own_echo_does_not_interrupt_it(server: Server, delay_s: float) -> None:
    echo = {"echo_gain": 10 ** (-6 / 20), "echo_delay_s": delay_s, "echo_tail_s": 0.05}
    async with VoiceClient(server.ws, **echo) as client:
        await client.stream(np.zeros(8000, np.int16))
        result = await client.turn(utterance(STORY), timeout_s=60)
    types = [e["type"] for e in result.events]
    assert "audio.clear" not in types and not result.interrupted, types
    assert types.count("speech.started") == 1  # the echo never started a turn
    assert len(result.audio) / 24000 > 2.0  # a real answer played (and echoed) in full


async def test_a_sentence_spoken_over_the_echo_interrupts_and_is_answered(server: Server) -> None:
    echo = {"echo_gain": 10 ** (-6 / 20), "echo_delay_s": 0.1, "echo_tail_s": 0.05}
    async with VoiceClient(server.ws, **echo) as client:
        await _agent_talking(client)
        await client.stream(utterance("Wait, what is the capital of Italy?"))
        await silence_until(client, lambda: client.first("response.done", turn_id=2) is not None, 60)
    done1 = client.first("response.done", turn_id=1)
    assert done1 is not None and done1["interrupted"] and client.first("audio.clear") is not None
    final2 = client.first("transcript.final", turn_id=2)
    assert final2 is not None and "italy" in final2["text"].lower(), final2
    done2 = client.first("response.done", turn_id=2)
    assert done2 is not None and done2["text"] and not done2["interrupted"]


@pytest.mark.parametrize("backchannel", ["Okay.", "Yeah.", "Mm-hmm.", "Hmm."])
async def test_a_backchannel_does_not_interrupt(server: Server, backchannel: str) -> None:
    async with VoiceClient(server.ws) as client:
        await _agent_talking(client)
        await client.stream(utterance(backchannel))
        await silence_until(client, lambda: client.first("response.done", turn_id=1) is not None, 60)
    done = client.first("response.done", turn_id=1)
    assert done is not None and not done["interrupted"]
    assert client.first("audio.clear") is None
    assert client.first("speech.started", turn_id=2) is None


@pytest.fixture(scope="module")
def long_reply_server() -> Iterator[Server]:
    """The default models, with room for replies long enough to still be generating when cut."""
    s = start_server("--max-reply-tokens", "400")
    yield s
    s.stop()


async def test_a_barge_in_frees_the_llm_at_once(long_reply_server: Server) -> None:
    """(e) cutting a reply whose generation is still running stops it: the next turn's first token
    comes as soon as an undisturbed turn's (a generation left running would make it wait seconds)."""
    question = utterance("What is the capital of Italy?")
    async with VoiceClient(long_reply_server.ws) as client:
        await client.stream(np.zeros(8000, np.int16))
        undisturbed = await client.turn(question)
        calm = undisturbed.metrics["timeline_ms"]["llm_first_token"]
        await client.stream(np.zeros(4800, np.int16))
        await client.send_json(
            {
                "type": "text.input",
                "text": "Tell me a very long and detailed story about a brave knight, "
                "a dragon and a kingdom by the sea, with many chapters.",
            }  # fmt: skip
        )
        tid = undisturbed.turn_id + 1
        await silence_until(client, lambda: client.first("response.audio.started", turn_id=tid) is not None)
        await client.stream(np.zeros(16000, np.int16))  # 1 s into the story: the LLM is still writing it
        await client.stream(question)
        await silence_until(client, lambda: client.first("turn.metrics", turn_id=tid + 1) is not None, 60)
    cut = client.first("response.done", turn_id=tid)
    assert cut is not None and cut["interrupted"]
    after = client.first("turn.metrics", turn_id=tid + 1)
    assert after is not None
    first_token = after["timeline_ms"]["llm_first_token"]
    assert first_token <= calm + 1000, (first_token, calm)
