"""Speech recognition: one shared model; ``transcribe`` runs in the ASR worker thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

ASR_RATE = 16_000


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str
    audio_s: float
    elapsed_s: float


class Asr(Protocol):
    name: str

    def transcribe(self, audio: npt.NDArray[np.float32], *, final: bool) -> Transcript:
        """16 kHz mono float32 in [-1, 1] -> text. ``final`` may spend more effort (beam search).
        Blocking: call it from a worker thread."""
        ...
