"""Test speech and scoring, shared by the integration tests."""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from agent.config import Settings
from agent.engines import load_tts
from agent.tts.base import Tts
from streaming.devtools import bench
from streaming.devtools.references import wer, words

__all__ = ["utterance", "wer", "words"]


@functools.cache
def _tts() -> Tts:
    return load_tts(Settings())


def utterance(text: str, rate: int = 16000) -> npt.NDArray[np.int16]:
    """``text`` spoken by the embedded TTS at ``rate``, ending on its last speech sample."""
    return bench.speech(_tts(), text, rate)
