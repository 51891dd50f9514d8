"""Fake models with the real protocols: deterministic, instant, no weights. For session logic only."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from agent.asr.base import AsrPurpose, AsrRequest, Transcript
from agent.config import Settings
from agent.engines import Engines
from agent.eot.base import EotRequest, EotScore
from agent.errors import ModelError
from agent.llm.base import ChatMessage, LlmOutput, LlmRequest, TextDelta
from agent.tts.base import TtsChunk, TtsRequest
from agent.vad.base import VAD_WINDOW, VadFrame

LOUD = 8000  # amplitude of fake "speech"


class FakeVadStream:
    def __init__(self) -> None:
        self._pending = np.zeros(0, np.int16)
        self._pos = 0

    def process(self, pcm: npt.NDArray[np.int16]) -> list[VadFrame]:
        buf = np.concatenate([self._pending, pcm])
        out = []
        n = len(buf) // VAD_WINDOW
        for i in range(n):
            w = buf[i * VAD_WINDOW : (i + 1) * VAD_WINDOW]
            self._pos += VAD_WINDOW
            out.append(VadFrame(self._pos, 0.95 if np.abs(w).max() >= LOUD // 2 else 0.02))
        self._pending = buf[n * VAD_WINDOW :]
        return out


class FakeVad:
    name = "fake-vad"

    def stream(self) -> FakeVadStream:
        return FakeVadStream()


class FakeAsr:
    """Says one word per 100 ms of loud audio: 'w1 w2 ...' (so a longer utterance has more words),
    ending in a period like Whisper does."""

    name = "fake-asr"

    def __init__(self) -> None:
        self.calls = 0
        self.overlap_texts: list[str] = []  # what quick (non-final) passes hear, in order, if set

    def transcribe(self, audio: npt.NDArray[np.float32], *, final: bool) -> Transcript:
        self.calls += 1
        if not final and self.overlap_texts:
            return Transcript(self.overlap_texts.pop(0), "en", len(audio) / 16000, 0.001)
        loud = int(np.sum(np.abs(audio) >= (LOUD / 2) / 32768.0))
        n = loud // 1600
        text = " ".join(f"w{i + 1}" for i in range(n))
        # A question: finished, and not a brief statement that may go on (meaning.brief_statement).
        return Transcript(text + "?" if text else "", "en", len(audio) / 16000, 0.001)

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[Transcript]:
        return [self.transcribe(r.audio, final=r.purpose is AsrPurpose.FINAL) for r in requests]


class FakeLlm:
    name = "fake-llm"

    def __init__(self) -> None:
        self.fail_next = False
        self.loop_next = False  # the next reply degenerates into "sunscreen, sunscreen, ..." (500 times)
        self.tokens = 0
        self.token_s = 0.0  # time each token takes (0: instant)
        self.seen: list[tuple[ChatMessage, ...]] = []
        self.prefilled: list[str] = []  # the last message of each prefill request
        self.pauses = 0
        self.resumed: list[object] = []  # what resume() got back, in order

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def prefill(self, request: LlmRequest, cancelled: Callable[[], bool]) -> int:
        self.prefilled.append(request.messages[-1].content)
        return len(request.messages[-1].content.split())

    def pause(self) -> object:
        self.pauses += 1
        return self.pauses

    def resume(self, paused: object) -> None:
        self.resumed.append(paused)

    def stream(self, request: LlmRequest, cancelled: Callable[[], bool]) -> Iterator[LlmOutput]:
        self.seen.append(request.messages)
        heard = request.messages[-1].content
        yield TextDelta("You said")
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the model fell over")
        if self.loop_next:
            self.loop_next = False
            for word in " you should pack sunglasses,".split(" ")[1:] + ["sunscreen,"] * 500:
                if cancelled():
                    return
                time.sleep(0.002)  # a token takes time, as in a real model
                self.tokens += 1
                yield TextDelta(" " + word)
            return
        for word in f" {heard}. That is one clause, and here is another clause for you.".split(" "):
            if cancelled():
                return
            time.sleep(self.token_s)
            yield TextDelta(word if not word else " " + word)


class FakeTts:
    """0.04 s of tone per word."""

    name = "fake-tts"
    sample_rate = 16000
    voices = ("fake", "other")

    def __init__(self) -> None:
        self.requests: list[TtsRequest] = []

    def check_voice(self, voice_id: str) -> str:
        if voice_id not in self.voices:
            raise ModelError(f"unknown voice {voice_id!r}; known: {', '.join(self.voices)}", code="bad_voice")
        return voice_id

    def synthesize(self, text: str) -> npt.NDArray[np.float32]:
        n = int(0.04 * self.sample_rate) * len(text.split())
        return (np.sin(np.arange(n) * 0.2) * 0.15).astype(np.float32)  # echo level: under the user

    def stream(self, request: TtsRequest, cancelled: Callable[[], bool]) -> Iterator[TtsChunk]:
        self.requests.append(request)
        yield TtsChunk(self.synthesize(request.text), self.sample_rate)


class FakeEot:
    """An end-of-turn model with one opinion, ``probability``, about every pause."""

    name = "fake-eot"

    def __init__(self, probability: float = 0.9) -> None:
        self.probability = probability
        self.seen: list[int] = []  # samples of audio in each request

    def score_batch(self, requests: list[EotRequest]) -> list[EotScore]:
        self.seen += [len(r.audio) for r in requests]
        return [EotScore(self.probability, 0.001) for _ in requests]


def fake_engines(eot: FakeEot | None = None) -> Engines:
    return Engines.of(FakeVad(), FakeAsr(), FakeLlm(), FakeTts(), eot=eot)


def fast_settings(**kw: object) -> Settings:
    base: dict[str, object] = {
        "endpoint_silence_s": 0.25,
        "endpoint_complete_s": 0.2,
        "endpoint_incomplete_s": 0.3,
        "min_speech_s": 0.06,
        "partial_interval_s": 0.0,
        "playout_lead_s": 0.02,
        "aec": "off",  # the fake "speech" is a constant level: a canceller's high-pass filter removes it
    }
    base.update(kw)
    return Settings.of(**base)


def speech(seconds: float) -> npt.NDArray[np.int16]:
    return np.full(int(seconds * 16000), LOUD, np.int16)


def silence(seconds: float) -> npt.NDArray[np.int16]:
    return np.zeros(int(seconds * 16000), np.int16)
