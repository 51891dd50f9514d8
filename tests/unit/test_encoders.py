"""The speech API's audio formats: each encodes incrementally and decodes back to the same length;
uploads are read whatever their format, within a length limit."""

from __future__ import annotations

import numpy as np
import pytest

from streaming.encoders import FORMATS, decode_audio, encoder, wav_header
from streaming.rest import slug

RATE = 24000


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "pcm"])
def test_each_format_streams_and_decodes_to_the_same_length(fmt: str) -> None:
    pcm = _tone(1.5)
    out = encoder(fmt, RATE)
    parts = [out.feed(pcm[i : i + 4000]) for i in range(0, len(pcm), 4000)]
    parts.append(out.close())
    assert parts[0]  # bytes leave with the first chunk, before the end
    audio, rate = decode_audio(b"".join(parts), 10)
    assert abs(len(audio) / rate - 1.5) < 0.12  # codec priming and padding at most
    assert 0.1 < float(np.sqrt(np.mean(audio**2))) < 0.3  # the tone, not silence


def test_pcm_is_the_samples_themselves() -> None:
    pcm = _tone(0.1)
    out = encoder("pcm", RATE)
    assert out.feed(pcm) + out.close() == pcm.astype("<i2").tobytes()


def test_a_streamed_wav_says_its_length_is_unknown() -> None:
    header = wav_header(RATE)
    assert header[:4] == b"RIFF" and header[4:8] == b"\xff\xff\xff\xff" and len(header) == 44
    assert wav_header(RATE, 100)[4:8] == (136).to_bytes(4, "little")


def test_uploads_that_are_not_audio_or_too_long_are_refused() -> None:
    with pytest.raises(ValueError, match="FFmpeg"):
        decode_audio(b"definitely not audio" * 50, 10)
    out = encoder("wav", RATE)
    long_wav = out.feed(_tone(3.0)) + out.close()
    with pytest.raises(ValueError, match="longer than 2 s"):
        decode_audio(long_wav, 2)
    out = encoder("flac", RATE)
    with pytest.raises(ValueError, match="longer than 2 s"):
        decode_audio(out.feed(_tone(3.0)) + out.close(), 2)


def test_a_voice_id_is_made_from_its_display_name() -> None:
    assert slug("Ada Lovelace") == "ada-lovelace"
    assert slug("  ÉMILE  ") == "mile"
    assert slug("!!!") == "voice"
    assert len(slug("x" * 80)) == 40
