"""hibari TTS: a non-autoregressive ONNX acoustic model with a DSP vocoder, 24 kHz.

Only the bundled voice ("heart") is on this machine; other hibari voices would be downloaded from a
model hub on first use, which voxloop never allows: they must already be in hibari's cache.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hibari import SAMPLE_RATE, Hibari
from hibari.voices import VOICES, voice_path

from agent.errors import ModelError


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
        self._tts = Hibari(voice=voice, model=path, threads=threads)
        self._speed = speed
        self._rng = np.random.default_rng(0)

    def synthesize(self, text: str) -> npt.NDArray[np.float32]:
        parts = [
            self._tts.from_ids(self._tts.ids(ps), self._speed, self._rng) for ps in self._tts.phonemize(text)
        ]
        if not parts:
            return np.zeros(0, np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)
