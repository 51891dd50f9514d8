"""Test speech and scoring, shared by the integration tests."""

from __future__ import annotations

import functools
import re

import numpy as np
import numpy.typing as npt

from agent.config import Settings
from agent.engines import load_tts
from agent.tts.base import Tts
from streaming.audio import float_to_pcm, resample

AUDIBLE = 328  # -40 dBFS in int16


@functools.cache
def _tts() -> Tts:
    return load_tts(Settings())


def utterance(text: str, rate: int = 16000) -> npt.NDArray[np.int16]:
    """``text`` spoken by the embedded TTS at ``rate``, trailing silence trimmed: the last sample is
    the last speech sample (leading silence kept short, as a person starts talking)."""
    tts = _tts()
    pcm = resample(float_to_pcm(tts.synthesize(text)), tts.sample_rate, rate)
    loud = np.nonzero(np.abs(pcm.astype(np.int32)) > AUDIBLE)[0]
    start = max(0, int(loud[0]) - rate // 10)
    return pcm[start : int(loud[-1]) + 1]


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
