from __future__ import annotations

import numpy as np
import pytest

from agent.audio import peak_dbfs
from agent.errors import AudioFormatError
from agent.tts.base import pause_after, trim_silence
from streaming.codecs import StreamResampler, check_rate, pcm_from_bytes, resample


def test_pcm_bytes_are_little_endian_int16() -> None:
    assert pcm_from_bytes(b"\x01\x00\xff\xff", 16000).tolist() == [1, -1]


@pytest.mark.parametrize(
    ("data", "rate", "code"),
    [
        (b"", 16000, "bad_audio_frame"),
        (b"\x00\x00\x00", 16000, "bad_audio_frame"),
        (b"\x00\x00" * 16001, 16000, "audio_frame_too_long"),
        (b"\x00\x00" * 8001, 8000, "audio_frame_too_long"),
    ],
)
def test_bad_frames(data: bytes, rate: int, code: str) -> None:
    with pytest.raises(AudioFormatError) as info:
        pcm_from_bytes(data, rate)
    assert info.value.code == code


def test_one_second_frame_is_the_largest_accepted() -> None:
    assert len(pcm_from_bytes(b"\x00\x00" * 48000, 48000)) == 48000


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_supported_rates(rate: int) -> None:
    assert check_rate(rate) == rate


def test_streaming_resampler_matches_length_and_keeps_a_tone() -> None:
    rate_in, rate_out = 48000, 16000
    t = np.arange(rate_in) / rate_in
    tone = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)
    r = StreamResampler(rate_in, rate_out)
    out = np.concatenate([r.process(tone[i : i + 960]) for i in range(0, len(tone), 960)] + [r.flush()])
    assert abs(len(out) - rate_out) <= 2
    spectrum = np.abs(np.fft.rfft(out[2000:14000].astype(np.float64)))
    peak_hz = np.argmax(spectrum) * rate_out / 12000
    assert abs(peak_hz - 440) < 3
    assert len(resample(tone, rate_in, rate_in)) == rate_in


def test_peak_dbfs() -> None:
    assert peak_dbfs(np.array([0, 328, -10], np.int16)) == pytest.approx(-40, abs=0.1)
    assert peak_dbfs(np.zeros(0, np.int16)) == -120.0


def test_trim_silence_keeps_the_speech_and_a_short_pause() -> None:
    rate = 1000
    audio = np.zeros(1000, np.float32)
    audio[300:500] = 0.5
    out = trim_silence(audio, rate, lead_s=0.01, tail_s=0.1)
    assert len(out) == 10 + 200 + 100
    assert float(np.abs(out[:10]).max()) == 0.0 and float(out[10]) == 0.5
    assert len(trim_silence(np.zeros(100, np.float32), rate)) == 0
    assert pause_after("Hello.") > pause_after("well,") > pause_after("and")
