"""Fake models with the real protocols: deterministic, instant, no weights. For session logic only."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from agent.asr.base import Transcript
from agent.config import Settings
from agent.engines import Engines, ModelWorker
from agent.llm.base import GenerationOptions
from agent.turn import VAD_WINDOW, VadFrame

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
        return Transcript(text + "." if text else "", "en", len(audio) / 16000, 0.001)


class FakeLlm:
    name = "fake-llm"

    def __init__(self) -> None:
        self.fail_next = False
        self.seen: list[list[dict[str, str]]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream_chat(
        self, messages: list[dict[str, str]], options: GenerationOptions, stop: threading.Event
    ) -> Iterator[str]:
        self.seen.append(messages)
        heard = messages[-1]["content"]
        yield "You said"
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the model fell over")
        for word in f" {heard}. That is one clause, and here is another clause for you.".split(" "):
            if stop.is_set():
                return
            yield word if not word else " " + word


class FakeTts:
    """0.04 s of tone per word."""

    name = "fake-tts"
    sample_rate = 16000

    def synthesize(self, text: str) -> npt.NDArray[np.float32]:
        n = int(0.04 * self.sample_rate) * len(text.split())
        return (np.sin(np.arange(n) * 0.2) * 0.15).astype(np.float32)  # echo level: under the user


def fake_engines() -> Engines:
    return Engines(
        FakeVad(), FakeAsr(), FakeLlm(), FakeTts(),
        ModelWorker("vad"), ModelWorker("asr"), ModelWorker("llm"), ModelWorker("tts"), {},
    )  # fmt: skip


def fast_settings(**kw: object) -> Settings:
    base: dict[str, object] = {
        "endpoint_silence_s": 0.25,
        "endpoint_complete_s": 0.2,
        "endpoint_incomplete_s": 0.3,
        "min_speech_s": 0.06,
        "partial_interval_s": 0.0,
        "playout_lead_s": 0.02,
    }
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def speech(seconds: float) -> npt.NDArray[np.int16]:
    return np.full(int(seconds * 16000), LOUD, np.int16)


def silence(seconds: float) -> npt.NDArray[np.int16]:
    return np.zeros(int(seconds * 16000), np.int16)
