"""The one internal audio format, shared by the conversation and the transports. Pure: numpy only.

Inside voxloop audio is int16 mono with a sample rate and a pts in samples (``AudioChunk``). A session
takes its input at ``INPUT_RATE`` (16 kHz: what the VAD and Whisper want); agent audio leaves at the
TTS model's rate, and the transports convert both at their edges (streaming/codecs.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

INPUT_RATE = 16_000  # sessions take 16 kHz int16 input; transports resample to it
AUDIO_PTIME_S = 0.020  # one frame of audio on the wire
SUPPORTED_SAMPLE_RATES = (8000, 16000, 24000, 48000)  # what a client may send or ask for

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class AudioChunk:
    pcm: Pcm
    sample_rate: int
    pts: int = 0  # position of the first sample, in samples of this stream

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.sample_rate


def float_to_pcm(audio: npt.NDArray[np.floating]) -> Pcm:
    return np.asarray(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def pcm_to_float(pcm: Pcm) -> npt.NDArray[np.float32]:
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32, copy=False)


def peak_dbfs(pcm: Pcm) -> float:
    if len(pcm) == 0:
        return -120.0
    peak = int(np.max(np.abs(pcm.astype(np.int32))))
    return 20.0 * float(np.log10(max(peak, 1) / 32768.0))
