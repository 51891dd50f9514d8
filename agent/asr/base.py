"""Speech recognition: typed requests and results, and the Protocol a backend implements.

A request says what the pass is for, and that is its priority in the ASR queue (agent/scheduler.py):
the final pass of a turn before an overlap pass (what was said over the agent?) before a partial one.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

ASR_RATE = 16_000


class AsrPurpose(enum.IntEnum):
    """Why a pass runs; the value is its priority (lower runs first)."""

    FINAL = 0  # the transcript a reply answers (may spend more effort: beam search)
    OVERLAP = 1  # speech over the agent: an interruption, a backchannel or noise?
    PARTIAL = 2  # the live transcript while the user speaks (best effort)


@dataclass(frozen=True, slots=True, eq=False)
class AsrRequest:
    audio: npt.NDArray[np.float32]  # 16 kHz mono float32 in [-1, 1]
    purpose: AsrPurpose


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str
    audio_s: float
    elapsed_s: float
    # How sure the model is that it heard words: mean log-probability per token (Whisper: about -0.3
    # to -0.8 for clear words, below -1 for "mm-hmm" heard as "Mama") and P(no speech). None: unknown.
    avg_logprob: float | None = None
    no_speech_prob: float | None = None


class Asr(Protocol):
    name: str

    def transcribe(self, audio: npt.NDArray[np.float32], *, final: bool) -> Transcript:
        """16 kHz mono float32 in [-1, 1] -> text. ``final`` may spend more effort (beam search).
        Blocking: call it from a worker thread."""
        ...

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[Transcript]:
        """One transcript per request, in order: the batch entry point the ASR queue calls (a backend
        that cannot batch runs them one by one). Blocking."""
        ...
