"""Audio conversions at the transports' edges: wire bytes, resampling, G.711. Pure: no I/O.

Inside voxloop audio is ``agent.audio.AudioChunk`` (int16 mono, a rate, a pts); this module turns wire
bytes (16-bit little-endian, or mu-law) into it and back. Resampling uses soxr (torchaudio's only PyPI
build is CUDA-only and fails to import on a CPU machine; soxr is small, exact and streams at ~7 us per
20 ms chunk).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from agent.audio import SUPPORTED_SAMPLE_RATES, Pcm
from agent.errors import AudioFormatError


def check_rate(rate: object) -> int:
    if not isinstance(rate, int) or isinstance(rate, bool) or rate not in SUPPORTED_SAMPLE_RATES:
        raise AudioFormatError(
            f"unsupported sample rate {rate!r}; use one of {', '.join(map(str, SUPPORTED_SAMPLE_RATES))}",
            code="unsupported_sample_rate",
        )
    return rate


def pcm_from_bytes(data: bytes, sample_rate: int, max_duration_s: float = 1.0) -> Pcm:
    """Validate and decode one binary frame of 16-bit little-endian mono PCM."""
    if len(data) == 0:
        raise AudioFormatError("empty audio frame", code="bad_audio_frame")
    if len(data) % 2:
        raise AudioFormatError(
            f"audio frame of {len(data)} bytes: 16-bit PCM needs an even byte count", code="bad_audio_frame"
        )
    samples = len(data) // 2
    if samples > sample_rate * max_duration_s:
        raise AudioFormatError(
            f"audio frame of {samples / sample_rate:.2f} s; frames may carry at most {max_duration_s:g} s",
            code="audio_frame_too_long",
        )
    return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)


def pcm_to_bytes(pcm: Pcm) -> bytes:
    return pcm.astype("<i2", copy=False).tobytes()


def resample(pcm: Pcm, in_rate: int, out_rate: int) -> Pcm:
    """Whole-buffer resampling (files, tests)."""
    if in_rate == out_rate:
        return pcm
    return np.asarray(soxr.resample(pcm, in_rate, out_rate), dtype=np.int16)


class StreamResampler:
    """Chunk-by-chunk resampling with state kept between chunks (no clicks at chunk edges)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16")
        )

    def process(self, pcm: Pcm, *, last: bool = False) -> Pcm:
        if self._stream is None:
            return pcm
        return np.asarray(self._stream.resample_chunk(pcm, last=last), dtype=np.int16)

    def flush(self) -> Pcm:
        return self.process(np.zeros(0, np.int16), last=True)


# -- G.711 mu-law (telephony), vectorised ---------------------------------------------------------
_MULAW_BIAS = 0x84
_MULAW_BIAS14 = 0x21  # the bias and clip of the 14-bit encoder
_MULAW_CLIP14 = 8159
_MULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def _mulaw_decode_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


_MULAW_DECODE = _mulaw_decode_table()


def mulaw_decode(data: bytes) -> Pcm:
    """G.711 mu-law bytes -> 16-bit PCM (one sample per byte)."""
    return _MULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def mulaw_encode(pcm: Pcm) -> bytes:
    """16-bit PCM -> G.711 mu-law bytes: the 14-bit reference algorithm (identical to audioop.lin2ulaw)."""
    v = pcm.astype(np.int32) >> 2
    negative = v < 0
    v = np.minimum(np.where(negative, -v, v), _MULAW_CLIP14) + _MULAW_BIAS14
    segment = np.searchsorted(_MULAW_SEGMENT_ENDS, v, side="left")
    code = np.where(
        segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | ((v >> (np.minimum(segment, 7) + 1)) & 0x0F)
    )
    return (code ^ np.where(negative, 0x7F, 0xFF)).astype(np.uint8).tobytes()
