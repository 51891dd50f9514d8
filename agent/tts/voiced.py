"""The TTS role's model: every voice of the speaker library, each on its engine, at one output rate.

A request names a voice (None: the server's default); the library says which engine speaks it and
with what parameters. Engines load on first use and are shared by every voice on them; an engine
whose model is not installed fails that voice's requests, never the others. Output is resampled to
``sample_rate`` (24 kHz) with soxr when an engine speaks at another rate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt
import soxr

from agent.errors import ModelError
from agent.tts.base import TtsChunk, TtsRequest, VoiceEngine
from agent.voices.library import Voice, VoiceError, VoiceLibrary

log = logging.getLogger(__name__)

OUTPUT_RATE = 24000


class VoicedTts:
    def __init__(
        self,
        library: VoiceLibrary,
        load_engine: Callable[[str], VoiceEngine],
        *,
        default_voice: str = "heart",
        sample_rate: int = OUTPUT_RATE,
    ) -> None:
        self.library = library
        self.sample_rate = sample_rate
        self._load_engine = load_engine
        self._engines: dict[str, VoiceEngine] = {}
        self._lock = threading.Lock()
        self.default_voice = default_voice
        self.check_voice(default_voice)
        self.name = f"{self.engine(library.get(default_voice)).name}-{default_voice}"

    @property
    def voices(self) -> tuple[str, ...]:
        ids = self.library.ids()
        return (self.default_voice, *(i for i in ids if i != self.default_voice))

    def voice(self, voice_id: str | None) -> Voice:
        """The library's record for ``voice_id`` (None: the default); ModelError ``bad_voice`` if unknown."""
        try:
            return self.library.get(voice_id or self.default_voice)
        except VoiceError as e:
            raise ModelError(e.message, code="bad_voice") from e

    def check_voice(self, voice_id: str) -> Voice:
        """The voice, after checking its engine loads and takes its parameters (ModelError if not)."""
        voice = self.voice(voice_id)
        self.engine(voice).check(voice.params)
        return voice

    def engine(self, voice: Voice) -> VoiceEngine:
        with self._lock:
            engine = self._engines.get(voice.engine)
            if engine is None:
                log.info("loading TTS engine %s for voice %r", voice.engine, voice.id)
                engine = self._load_engine(voice.engine)
                self._engines[voice.engine] = engine
            return engine

    def synthesize(self, text: str, voice: str | None = None) -> npt.NDArray[np.float32]:
        parts = [c.audio for c in self.stream(TtsRequest(text, voice), lambda: False)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def stream(self, request: TtsRequest, cancelled: Callable[[], bool]) -> Iterator[TtsChunk]:
        voice = self.voice(request.voice)
        engine = self.engine(voice)
        for chunk in engine.render(request.text, voice.params, request.options, cancelled):
            if chunk.sample_rate == self.sample_rate:
                yield chunk
                continue
            audio = soxr.resample(chunk.audio, chunk.sample_rate, self.sample_rate, quality="HQ")
            yield TtsChunk(np.asarray(audio, np.float32), self.sample_rate, chunk.words)
