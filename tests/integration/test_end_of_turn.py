"""End of turn against the real server and models: Smart Turn beside the transcript, hesitations that
hold the turn, and speech after an endpoint that is still part of the same turn.

Each utterance is spoken in real time with the embedded TTS's voice, its pauses exact (bench.render).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest

from streaming.devtools.bench import Utterance, render
from streaming.devtools.client import TurnResult, VoiceClient
from tests.integration.conftest import Server, start_server
from tests.support import _tts, utterance, wer


async def _say(server: Server, speech: np.ndarray) -> tuple[TurnResult, list[dict[str, object]]]:
    async with VoiceClient(server.ws) as client:
        await client.stream(np.zeros(8000, np.int16))
        result = await client.turn(speech, timeout_s=60)
        await client.stream(np.zeros(16000, np.int16))  # a second of silence: nothing else may come
        return result, client.messages(since=0)


@pytest.fixture(scope="module")
def eot_at_full_priority() -> Iterator[Server]:
    """The end-of-turn model's thread at normal priority (eot_nice 0): on 2 busy cores its opinion then
    always comes in time for the short endpoint (by default it yields to the ASR and may come late)."""
    s = start_server("--eot-nice", "0")
    yield s
    s.stop()


async def test_a_complete_question_ends_at_the_short_endpoint(eot_at_full_priority: Server) -> None:
    result, _ = await _say(eot_at_full_priority, utterance("What is the capital of France?"))
    endpointing = result.metrics["endpointing"]
    # Both opinions were there and agreed: the turn ended on the confident (shortest) bound.
    assert endpointing["transcript"] == "complete", endpointing
    assert endpointing["acoustic"] is not None and endpointing["acoustic"] >= 0.5, endpointing
    assert endpointing["endpoint_ms"] == 200, endpointing
    assert result.metrics["timeline_ms"]["endpoint"] < 500  # before the transcript-only bound
    assert "paris" in result.reply_text.lower()


@pytest.mark.parametrize(
    ("parts", "pause_s", "heard"),
    [
        (("What is the name of", "the closest star to Earth?"), 0.6, None),  # a dangling "of"
        (("I would like a pizza with cheese and", "some olives on top."), 0.9, None),  # a trailing "and"
        (("My number is five five five,", "one two three four."), 0.8, "5551234"),  # inside digits
        (("I need a table.", "For four people at eight."), 0.7, None),  # a short sentence, then more
    ],
    ids=["the-name-of", "trailing-and", "digits", "short-sentence"],
)
async def test_a_hesitation_holds_the_turn_and_all_of_it_is_answered_once(
    server: Server, parts: tuple[str, str], pause_s: float, heard: str | None
) -> None:
    speech = render(_tts(), Utterance(parts, (pause_s,)))
    result, messages = await _say(server, speech)
    types = [m["type"] for m in messages]
    assert types.count("speech.stopped") == 1 and types.count("response.started") == 1, types
    assert types.count("transcript.final") == 1 and "audio.clear" not in types
    assert not result.premature and not result.interrupted and result.reply_text
    if heard is None:
        assert wer(" ".join(parts), result.transcript) <= 0.35, result.transcript
    else:  # Whisper writes digits as figures: all of them are in the one transcript
        assert heard in re.sub(r"\D", "", result.transcript), result.transcript


async def test_speech_while_an_early_reply_plays_is_heard_and_answered(server: Server) -> None:
    """A short sentence, a pause long enough for the answer to start playing, then more: the rest is
    never lost. It interrupts the early reply and is transcribed and answered."""
    first, rest = "Call me a taxi.", "To the central station, please."
    speech = render(_tts(), Utterance((first, rest), (2.5,)))
    async with VoiceClient(server.ws) as client:
        await client.stream(np.zeros(8000, np.int16))
        await client.turn(speech, timeout_s=60)
        await client.hold_silence(lambda: client.first("response.done", turn_id=2) is not None, timeout_s=60)
        finals = [m["text"] for m in client.messages("transcript.final", 0)]
        done2 = client.first("response.done", turn_id=2)
    assert any("station" in f.lower() for f in finals), finals
    assert done2 is not None and done2["text"] and not done2["interrupted"]
