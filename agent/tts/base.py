"""Text to speech: one shared non-autoregressive model; ``synthesize`` runs in the TTS worker."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt


class Tts(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> npt.NDArray[np.float32]:
        """One clause -> mono float32 audio at ``sample_rate``. Blocking: call from a worker thread."""
        ...


def trim_silence(
    audio: npt.NDArray[np.float32],
    sample_rate: int,
    *,
    threshold_dbfs: float = -50.0,
    lead_s: float = 0.015,
    tail_s: float = 0.15,
) -> npt.NDArray[np.float32]:
    """Cut the model's leading and trailing silence, keeping ``lead_s`` before the first sample above
    ``threshold_dbfs`` and ``tail_s`` after the last (the pause before the next clause).

    hibari pads each synthesis with ~300 ms of silence before and ~440 ms after the speech: left in,
    the leading part adds straight to voice-to-voice latency and the trailing part to every clause gap.
    """
    level = 10.0 ** (threshold_dbfs / 20.0)
    loud = np.nonzero(np.abs(audio) > level)[0]
    if len(loud) == 0:
        return audio[:0]
    start = max(0, int(loud[0]) - int(lead_s * sample_rate))
    end = min(len(audio), int(loud[-1]) + 1 + int(tail_s * sample_rate))
    return audio[start:end]


def pause_after(clause: str) -> float:
    """Seconds of silence to leave after a clause: longer after a sentence than after a comma."""
    end = clause.rstrip("\"'”’)] ")[-1:]
    if end in (".", "!", "?", "…"):
        return 0.30
    if end in (",", ";", ":", "—", "–", "-"):
        return 0.15
    return 0.05
