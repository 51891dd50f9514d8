"""Voice activity detection: a shared model, one stateful stream per session."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from agent.turn import VadFrame


class VadStream(Protocol):
    """Per-session VAD state. Not thread-safe; one call at a time (the session's input task)."""

    def process(self, pcm16k: npt.NDArray[np.int16]) -> list[VadFrame]:
        """Feed 16 kHz int16 audio of any length; return one frame per completed window."""
        ...


class VadModel(Protocol):
    name: str

    def stream(self) -> VadStream: ...
