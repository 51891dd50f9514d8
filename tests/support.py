"""Test speech and scoring, shared by the integration tests."""

from __future__ import annotations

import functools
import re

import numpy as np
import numpy.typing as npt

from agent.config import Settings
from agent.engines import load_tts
from agent.tts.base import Tts
from streaming.devtools import bench


@functools.cache
def _tts() -> Tts:
    return load_tts(Settings())


def utterance(text: str, rate: int = 16000) -> npt.NDArray[np.int16]:
    """``text`` spoken by the embedded TTS at ``rate``, ending on its last speech sample."""
    return bench.speech(_tts(), text, rate)


def words(text: str) -> list[str]:
    text = text.lower().replace("-", " ")
    return re.sub(r"[^a-z0-9' ]+", " ", text).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance / reference length, after normalisation."""
    ref, hyp = words(reference), words(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(len(ref), 1)
