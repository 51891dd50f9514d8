"""Voice activity detection: a shared model, one stateful stream per session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

VAD_WINDOW = 512  # Silero's window at 16 kHz: 32 ms


@dataclass(frozen=True, slots=True)
class VadFrame:
    """One VAD window ending at input sample ``end_sample`` (16 kHz)."""

    end_sample: int
    probability: float
    gate: bool = True  # the cheap gate's vote (webrtcvad); onset needs it, continuation does not
    samples: int = VAD_WINDOW


class VadStream(Protocol):
    """Per-session VAD state. Not thread-safe; one call at a time (the session's input task)."""

    def process(self, pcm16k: npt.NDArray[np.int16]) -> list[VadFrame]:
        """Feed 16 kHz int16 audio of any length; return one frame per completed window."""
        ...


class VadModel(Protocol):
    name: str

    def stream(self) -> VadStream: ...
