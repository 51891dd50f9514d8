"""faster-whisper (CTranslate2) backend. Segments are a lazy generator: materialized here, in the
worker thread, never on the event loop."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel

from agent.asr.base import ASR_RATE, Transcript


class FasterWhisperAsr:
    def __init__(
        self,
        model: str,
        *,
        name: str,
        device: str = "cpu",
        compute_type: str = "int8",
        threads: int = 2,
        beam_size: int = 1,
        language: str = "en",
    ) -> None:
        self.name = name
        self._model = WhisperModel(model, device=device, compute_type=compute_type, cpu_threads=threads)
        self._beam_size = beam_size
        self._language = language or None

    def transcribe(self, audio: npt.NDArray[np.float32], *, final: bool) -> Transcript:
        t0 = time.perf_counter()
        segments, info = self._model.transcribe(
            audio,
            language=self._language,
            beam_size=self._beam_size if final else 1,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            temperature=0.0,
        )
        text = " ".join(s.text.strip() for s in segments).strip()
        return Transcript(text, info.language, len(audio) / ASR_RATE, time.perf_counter() - t0)
