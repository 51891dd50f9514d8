"""Text to speech: typed requests, a stream of audio chunks, and the Protocol a backend implements.

A request carries its text, the voice to speak it in (None: the backend's default) and options. The
backend streams audio in chunks as it makes them (``stream``, run in the TTS queue's worker thread,
checking ``cancelled()`` between chunks); a chunk may carry word timings when the model knows its
durations, which is what truncating memory to what was heard wants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class TtsOptions:
    speed: float = 1.0  # speaking rate, 0.5 slow .. 2.0 fast


@dataclass(frozen=True, slots=True)
class TtsRequest:
    text: str
    voice: str | None = None  # None: the backend's default voice
    options: TtsOptions = TtsOptions()
    first: bool = False  # the first clause of a reply: it goes before later clauses in the queue


@dataclass(frozen=True, slots=True)
class WordTiming:
    word: str
    start_s: float  # from the start of the request's audio
    end_s: float


@dataclass(frozen=True, slots=True, eq=False)
class TtsChunk:
    audio: npt.NDArray[np.float32]  # mono, at ``sample_rate``
    sample_rate: int
    words: tuple[WordTiming, ...] | None = None  # None: the model gives no durations


class VoiceEngine(Protocol):
    """One TTS engine (a model runtime) that speaks any voice defined on its model by parameters.
    A voice record (agent/voices/library.py) names its engine and holds those parameters."""

    name: str
    sample_rate: int

    def check(self, params: Mapping[str, float | str]) -> None:
        """ModelError(code="bad_voice") for parameters this engine cannot speak with."""
        ...

    def render(
        self, text: str, params: Mapping[str, float | str], options: TtsOptions, cancelled: Callable[[], bool]
    ) -> Iterator[TtsChunk]:
        """``text`` in the voice ``params`` describe, in chunks; stop before the next once ``cancelled()``.
        Blocking: call from a worker thread."""
        ...


class Tts(Protocol):
    """What the TTS role's engine drives: every voice of the library behind one output rate."""

    name: str
    sample_rate: int

    @property
    def voices(self) -> tuple[str, ...]:
        """The voice ids it can speak in now (the first is its default)."""
        ...

    def check_voice(self, voice_id: str) -> object:
        """ModelError(code="bad_voice"), naming the known voices, unless ``voice_id`` can be spoken."""
        ...

    def synthesize(self, text: str) -> npt.NDArray[np.float32]:
        """One clause -> mono float32 audio at ``sample_rate``. Blocking: call from a worker thread."""
        ...

    def stream(self, request: TtsRequest, cancelled: Callable[[], bool]) -> Iterator[TtsChunk]:
        """The request's audio in chunks as they are made; stop before the next chunk once
        ``cancelled()``. Raises agent.errors.ModelError(code="bad_voice") for a voice it lacks."""
        ...


def trim_silence(
    audio: npt.NDArray[np.float32],
    sample_rate: int,
    *,
    threshold_dbfs: float = -50.0,
    lead_s: float = 0.015,
    tail_s: float = 0.15,
) -> npt.NDArray[np.float32]:
    """Cut the model's leading and trailing silence, keeping ``lead_s`` before the first sample above
    ``threshold_dbfs`` and ``tail_s`` after the last (the pause before the next clause).

    hibari pads each synthesis with ~300 ms of silence before and ~440 ms after the speech: left in,
    the leading part adds straight to voice-to-voice latency and the trailing part to every clause gap.
    """
    start, end = speech_bounds(
        audio, sample_rate, threshold_dbfs=threshold_dbfs, lead_s=lead_s, tail_s=tail_s
    )
    return audio[start:end]


def speech_bounds(
    audio: npt.NDArray[np.float32],
    sample_rate: int,
    *,
    threshold_dbfs: float = -50.0,
    lead_s: float = 0.015,
    tail_s: float = 0.15,
) -> tuple[int, int]:
    """The sample range ``trim_silence`` keeps ((0, 0) for silence alone)."""
    level = 10.0 ** (threshold_dbfs / 20.0)
    loud = np.nonzero(np.abs(audio) > level)[0]
    if len(loud) == 0:
        return 0, 0
    start = max(0, int(loud[0]) - int(lead_s * sample_rate))
    end = min(len(audio), int(loud[-1]) + 1 + int(tail_s * sample_rate))
    return start, end


def shift_words(words: list[WordTiming], offset_s: float, duration_s: float) -> tuple[WordTiming, ...]:
    """Word timings moved by ``offset_s`` (negative: audio was cut before them), kept in [0, duration]."""
    return tuple(
        WordTiming(w.word, max(0.0, w.start_s + offset_s), min(duration_s, w.end_s + offset_s))
        for w in words
        if w.end_s + offset_s > 0
    )


def pause_after(clause: str) -> float:
    """Seconds of silence to leave after a clause: longer after a sentence than after a comma."""
    end = clause.rstrip("\"'”’)] ")[-1:]
    if end in (".", "!", "?", "…"):
        return 0.30
    if end in (",", ";", ":", "—", "–", "-"):
        return 0.15
    return 0.05
