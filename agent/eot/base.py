"""End-of-turn detection: a shared model that reads the end of an utterance and says whether the
speaker has finished (an input to turn-taking beside the VAD and the transcript, never the decider)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class EotRequest:
    """The utterance so far, 16 kHz float32 in [-1, 1], ending where the speech paused."""

    audio: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class EotScore:
    probability: float  # P(the turn is complete)
    elapsed_s: float  # model time (features + inference)


class EotModel(Protocol):
    name: str

    def score_batch(self, requests: list[EotRequest]) -> list[EotScore]:
        """One score per request, in order (one model call for the batch where the model allows)."""
        ...
