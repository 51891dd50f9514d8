"""The TTS role's router: each voice on its engine, engines loaded once on first use, output at one
rate, a failing engine failing only its own voices."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

from agent.errors import ModelError
from agent.tts.base import TtsChunk, TtsOptions, TtsRequest, WordTiming
from agent.tts.voiced import VoicedTts
from agent.voices.library import Voice, VoiceLibrary


class ToneEngine:
    """One second of a tone per request, at its own rate, with one word timing."""

    def __init__(self, rate: int) -> None:
        self.name = f"tone{rate}"
        self.sample_rate = rate
        self.seen: list[Mapping[str, float | str]] = []

    def check(self, params: Mapping[str, float | str]) -> None:
        if "bad" in params:
            raise ModelError("bad parameter", code="bad_voice")

    def render(
        self, text: str, params: Mapping[str, float | str], options: TtsOptions, cancelled: Callable[[], bool]
    ) -> Iterator[TtsChunk]:
        self.seen.append(params)
        t = np.arange(self.sample_rate) / self.sample_rate
        yield TtsChunk(
            (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32),
            self.sample_rate,
            (WordTiming(text, 0.1, 0.9),),
        )


VOICES = (
    Voice("a", "A", "native", "m", {"x": 1.0}, builtin=True),
    Voice("b", "B", "other", "m", {}, builtin=True),
    Voice("c", "C", "broken", "m", {}, builtin=True),
)


def _tts(tmp_path: Path) -> tuple[VoicedTts, dict[str, int], dict[str, ToneEngine]]:
    loads: dict[str, int] = {}
    engines = {"native": ToneEngine(24000), "other": ToneEngine(22050)}

    def load(name: str) -> ToneEngine:
        loads[name] = loads.get(name, 0) + 1
        if name == "broken":
            raise ModelError("this engine's model is missing", code="model_package_missing")
        return engines[name]

    return VoicedTts(VoiceLibrary(tmp_path, VOICES), load, default_voice="a"), loads, engines


def test_each_voice_runs_on_its_engine_with_its_params_at_one_output_rate(tmp_path: Path) -> None:
    tts, loads, engines = _tts(tmp_path)
    native = list(tts.stream(TtsRequest("hi"), lambda: False))
    other = list(tts.stream(TtsRequest("hi", "b"), lambda: False))
    assert engines["native"].seen == [{"x": 1.0}] and engines["other"].seen == [{}]
    assert native[0].sample_rate == other[0].sample_rate == 24000
    assert len(other[0].audio) == 24000  # 1 s at 22.05 kHz, resampled
    assert other[0].words == (WordTiming("hi", 0.1, 0.9),)  # timings are in seconds: unchanged
    list(tts.stream(TtsRequest("again", "b"), lambda: False))
    assert loads == {"native": 1, "other": 1}  # loaded once, shared


def test_a_broken_engine_fails_its_voices_only(tmp_path: Path) -> None:
    tts, _, _ = _tts(tmp_path)
    with pytest.raises(ModelError) as info:
        list(tts.stream(TtsRequest("hi", "c"), lambda: False))
    assert info.value.code == "model_package_missing"
    assert list(tts.stream(TtsRequest("hi", "b"), lambda: False))


def test_unknown_voices_and_bad_params_are_refused_naming_the_known(tmp_path: Path) -> None:
    tts, _, _ = _tts(tmp_path)
    with pytest.raises(ModelError) as info:
        tts.check_voice("zzz")
    assert info.value.code == "bad_voice" and "a, b, c" in info.value.message
    tts.library.add(Voice("d", "D", "native", "m", {"bad": 1.0}), np.ones(256, np.float32))
    with pytest.raises(ModelError, match="bad parameter"):
        tts.check_voice("d")
    assert tts.voices[0] == "a"  # the default first
