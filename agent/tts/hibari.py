"""hibari TTS: a non-autoregressive ONNX acoustic model with a DSP vocoder, 24 kHz.

Only the bundled voice ("heart") is on this machine; other hibari voices would be downloaded from a
model hub on first use, which voxloop never allows: they must already be in hibari's cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt
from hibari import SAMPLE_RATE, Hibari
from hibari.voices import VOICES, voice_path

from agent import models
from agent.config import Settings
from agent.errors import ModelError
from agent.tts.base import TtsChunk, TtsRequest


class HibariTts:
    sample_rate = SAMPLE_RATE

    def __init__(self, voice: str = "heart", *, speed: float = 1.0, threads: int = 1) -> None:
        if voice not in VOICES:
            raise ModelError(f"unknown hibari voice {voice!r}; known: {', '.join(VOICES)}", code="bad_voice")
        try:
            path = voice_path(voice, download_missing=False)
        except FileNotFoundError as e:
            raise ModelError(
                f"hibari voice {voice!r} is not on this machine (only 'heart' ships in the package; "
                f"voxloop never downloads models): expected {e}",
                code="bad_voice",
            ) from e
        self.name = f"hibari-{voice}"
        self.voice = voice
        self.voices = (voice,)  # one loaded voice per model
        self._tts = Hibari(voice=voice, model=path, threads=threads)
        self._speed = speed
        self._rng = np.random.default_rng(0)

    def synthesize(self, text: str) -> npt.NDArray[np.float32]:
        parts = [chunk.audio for chunk in self.stream(TtsRequest(text), lambda: False)]
        if not parts:
            return np.zeros(0, np.float32)
        return np.concatenate(parts)

    def stream(self, request: TtsRequest, cancelled: Callable[[], bool]) -> Iterator[TtsChunk]:
        """One chunk per phonemized sentence of the request (hibari's own split)."""
        if request.voice not in (None, self.voice):
            raise ModelError(
                f"voice {request.voice!r} is not loaded; this server speaks {self.voice!r}", code="bad_voice"
            )
        speed = self._speed * request.options.speed
        for phonemes in self._tts.phonemize(request.text):
            if cancelled():
                return
            audio = self._tts.from_ids(self._tts.ids(phonemes), speed, self._rng)
            yield TtsChunk(np.asarray(audio, np.float32), SAMPLE_RATE)


def load(settings: Settings, progress: models.ProgressFactory | None = None) -> HibariTts:
    if settings.tts.voice == "heart":
        models.prepare(models.CATALOGUE["hibari-heart"])  # verify the bundled model's sha256
    return HibariTts(settings.tts.voice, speed=settings.tts.speed)
