"""Audio response formats for the REST speech API: PCM in, bytes out as they are made.

``pcm`` (raw 16-bit little-endian mono) and ``wav`` (a header saying "length unknown", then PCM) need
no encoder; ``mp3``, ``opus`` (in Ogg), ``aac`` (ADTS) and ``flac`` go through PyAV (FFmpeg), which aiortc
already installs. Every encoder is incremental: ``feed`` returns what can be sent now, ``close`` the
rest, so a streamed response starts with the first clause. ``decode_audio`` reads an uploaded
reference recording (voice enrolment) the same way in reverse.
"""

from __future__ import annotations

import io
import struct
import wave
from typing import Any, Protocol, cast

import av
import numpy as np
import numpy.typing as npt
from av.audio.stream import AudioStream

CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
FORMATS = tuple(CONTENT_TYPES)

# format -> (FFmpeg container, codec, bit rate or 0 for the codec's default)
_AV: dict[str, tuple[str, str, int]] = {
    "mp3": ("mp3", "libmp3lame", 64_000),
    "opus": ("ogg", "libopus", 32_000),
    "aac": ("adts", "aac", 64_000),
    "flac": ("flac", "flac", 0),
}


class Encoder(Protocol):
    def feed(self, pcm: npt.NDArray[np.int16]) -> bytes: ...

    def close(self) -> bytes: ...


class PcmEncoder:
    def feed(self, pcm: npt.NDArray[np.int16]) -> bytes:
        return np.asarray(pcm, "<i2").tobytes()

    def close(self) -> bytes:
        return b""


class WavEncoder(PcmEncoder):
    """A RIFF header whose sizes say "unknown" (0xFFFFFFFF, as streaming servers write it), then PCM."""

    def __init__(self, sample_rate: int) -> None:
        self._header = wav_header(sample_rate)

    def feed(self, pcm: npt.NDArray[np.int16]) -> bytes:
        header, self._header = self._header, b""
        return header + super().feed(pcm)

    def close(self) -> bytes:
        header, self._header = self._header, b""
        return header


def wav_header(sample_rate: int, data_bytes: int = 0xFFFFFFFF) -> bytes:
    riff = 0xFFFFFFFF if data_bytes == 0xFFFFFFFF else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class _Sink:
    """A write-only file for FFmpeg's muxer: it cannot seek back, so it never rewrites a header
    after the bytes have left; ``take`` hands over what was written since the last call."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


class AvEncoder:
    def __init__(self, fmt: str, sample_rate: int) -> None:
        container, codec, bit_rate = _AV[fmt]
        self._sink = _Sink()
        self._out = av.open(self._sink, mode="w", format=container)
        self._stream = cast(AudioStream, self._out.add_stream(codec, rate=sample_rate))
        self._stream.layout = "mono"
        if bit_rate:
            self._stream.bit_rate = bit_rate
        self._rate = sample_rate
        self._pts = 0

    def feed(self, pcm: npt.NDArray[np.int16]) -> bytes:
        if len(pcm) == 0:
            return self._sink.take()
        frame = av.AudioFrame.from_ndarray(np.asarray(pcm, np.int16)[None, :], format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = self._pts
        self._pts += len(pcm)
        for packet in self._stream.encode(frame):
            self._out.mux(packet)
        return self._sink.take()

    def close(self) -> bytes:
        for packet in self._stream.encode(None):
            self._out.mux(packet)
        self._out.close()
        return self._sink.take()


def encoder(fmt: str, sample_rate: int) -> Encoder:
    """An encoder for one of ``FORMATS`` (KeyError otherwise)."""
    if fmt == "pcm":
        return PcmEncoder()
    if fmt == "wav":
        return WavEncoder(sample_rate)
    _AV[fmt]  # noqa: B018 - KeyError for an unknown format
    return AvEncoder(fmt, sample_rate)


def decode_audio(data: bytes, max_seconds: float) -> tuple[npt.NDArray[np.float32], int]:
    """An uploaded audio file (WAV, or anything FFmpeg reads: mp3, ogg/opus, flac, m4a...) -> mono
    float32 and its rate. ValueError naming the problem: not audio, or longer than ``max_seconds``."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            with wave.open(io.BytesIO(data), "rb") as w:
                if w.getsampwidth() == 2 and w.getcomptype() == "NONE":
                    rate, channels = w.getframerate(), w.getnchannels()
                    limit = int(max_seconds * rate)
                    raw = w.readframes(limit + 1)  # a streamed WAV's header gives no length
                    if len(raw) > limit * 2 * channels:
                        raise ValueError(f"the audio is longer than {max_seconds:.0f} s")
                    pcm = np.frombuffer(raw[: len(raw) // (2 * channels) * 2 * channels], "<i2")
                    pcm = pcm.reshape(-1, channels)
                    return pcm.mean(axis=1).astype(np.float32) / 32768.0, rate
        except (wave.Error, EOFError) as e:
            raise ValueError(f"a broken WAV file: {e}") from e
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise ValueError("the file has no audio stream")
            stream = container.streams.audio[0]
            rate = stream.rate
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            parts, samples = [], 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    part = out.to_ndarray().reshape(-1)
                    samples += len(part)
                    if samples > max_seconds * rate:
                        raise ValueError(f"the audio is longer than {max_seconds:.0f} s")
                    parts.append(part)
    except av.FFmpegError as e:
        raise ValueError(f"not an audio file FFmpeg can read ({type(e).__name__})") from e
    if not parts:
        raise ValueError("the file holds no audio samples")
    return np.concatenate(parts).astype(np.float32), int(rate)
