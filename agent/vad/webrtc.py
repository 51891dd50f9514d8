"""webrtcvad as a cheap gate: a window may start speech only if webrtcvad also hears speech in it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import webrtcvad

FRAME_SAMPLES = 160  # 10 ms at 16 kHz, the smallest frame webrtcvad takes


class WebRtcGate:
    def __init__(self, mode: int) -> None:
        self._vad = webrtcvad.Vad(mode)

    def any_speech(self, pcm16k: npt.NDArray[np.int16]) -> bool:
        """True if any 10 ms frame of ``pcm16k`` is speech (a partial last frame is ignored)."""
        usable = len(pcm16k) - len(pcm16k) % FRAME_SAMPLES
        data = pcm16k[:usable].astype("<i2").tobytes()
        step = FRAME_SAMPLES * 2
        return any(self._vad.is_speech(data[i : i + step], 16000) for i in range(0, len(data), step))
