"""hibari TTS: a non-autoregressive ONNX acoustic model with a DSP vocoder, 24 kHz.

Only the bundled voice ("heart") is on this machine; other hibari voices would be downloaded from a
model hub on first use, which voxloop never allows. Further voices are derived from heart by a shape
(agent/voices/shape.py) applied to the model's output before the vocoder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
import numpy.typing as npt
from hibari import SAMPLE_RATE, Hibari, dsp

from agent import models
from agent.config import Settings
from agent.tts.base import TtsChunk, TtsOptions
from agent.voices.shape import Shape


class HibariEngine:
    name = "hibari"
    sample_rate = SAMPLE_RATE

    def __init__(self, *, threads: int = 1) -> None:
        path = models.prepare(models.CATALOGUE["hibari-heart"])  # the bundled model, sha256 checked
        self._tts = Hibari(voice="heart", model=str(path), threads=threads)
        self._rng = np.random.default_rng(0)

    def check(self, params: Mapping[str, float | str]) -> None:
        Shape.of(params)

    def render(
        self, text: str, params: Mapping[str, float | str], options: TtsOptions, cancelled: Callable[[], bool]
    ) -> Iterator[TtsChunk]:
        """One chunk per phonemized sentence of ``text`` (hibari's own split)."""
        shape = Shape.of(params)
        speed = options.speed * shape.speed
        for phonemes in self._tts.phonemize(text):
            if cancelled():
                return
            yield TtsChunk(self.from_ids(self._tts.ids(phonemes), speed, shape), SAMPLE_RATE)

    def from_ids(self, ids: list[int], speed: float, shape: Shape) -> npt.NDArray[np.float32]:
        if len(ids) < 3:
            return np.zeros(0, np.float32)
        feeds = {"ids": np.asarray([ids], np.int64), "speed": np.asarray([speed], np.float32)}
        lh, th, ln, lr, phi, f0 = (np.asarray(o[0], np.float32) for o in self._tts.sess.run(None, feeds))
        if not shape.neutral:
            lh, th, ln, lr, phi, f0 = shape.apply(lh, th, ln, lr, phi, f0)
        return np.asarray(dsp.synth(lh, th, ln, lr, phi, f0, self._rng), np.float32)

    def f0(self, text: str) -> npt.NDArray[np.float32]:
        """The model's f0 track (Hz, 0 where unvoiced) for ``text``: the base voice's pitch."""
        tracks = []
        for phonemes in self._tts.phonemize(text):
            ids = self._tts.ids(phonemes)
            feeds = {"ids": np.asarray([ids], np.int64), "speed": np.asarray([1.0], np.float32)}
            tracks.append(np.asarray(self._tts.sess.run(None, feeds)[5][0], np.float32))
        return np.concatenate(tracks) if tracks else np.zeros(0, np.float32)


def load(settings: Settings, progress: models.ProgressFactory | None = None) -> HibariEngine:
    return HibariEngine()
