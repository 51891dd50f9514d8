"""An external GPT-SoVITS server as a TTS engine, for users who run one (configuration only).

GPT-SoVITS's ``api_v2.py`` serves ``POST /tts`` with JSON ``{text, text_lang, ref_audio_path,
prompt_text, prompt_lang, speed_factor, streaming_mode, media_type}`` and answers with audio (a WAV
header whose length is unknown, then PCM, when streaming) or HTTP 400 with a JSON error. voxloop
streams its answer in chunks as they arrive. The server's URL is ``--tts-gpt-sovits-url``; each voice
is a record whose engine is ``gpt-sovits`` and whose parameters name the reference on that server:

    {"version": 1, "id": "narrator", "name": "Narrator", "engine": "gpt-sovits", "model": "gpt-sovits",
     "params": {"ref_audio_path": "refs/narrator.wav", "prompt_text": "What the reference says.",
                "prompt_lang": "en", "text_lang": "en"}}

saved as ``narrator.json`` in the voices folder. Nothing is sent anywhere unless that URL is set.
"""

from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

import numpy as np

from agent import models
from agent.config import Settings
from agent.errors import ConfigError, ModelError
from agent.tts.base import TtsChunk, TtsOptions

REQUIRED = ("ref_audio_path", "prompt_lang")
OPTIONAL = ("prompt_text", "text_lang", "speed_factor", "top_k", "top_p", "temperature", "text_split_method")
CHUNK_BYTES = 8192


class GptSovitsEngine:
    name = "gpt-sovits"
    sample_rate = 32000  # api_v2's usual rate; each answer's WAV header says the real one

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"tts_gpt_sovits_url must be an http(s) URL, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def check(self, params: Mapping[str, float | str]) -> None:
        missing = [k for k in REQUIRED if not params.get(k)]
        unknown = sorted(set(params) - set(REQUIRED) - set(OPTIONAL))
        if missing or unknown:
            raise ModelError(
                f"a gpt-sovits voice needs {', '.join(REQUIRED)} (missing: {missing}; unknown: {unknown})",
                code="bad_voice",
            )

    def render(
        self, text: str, params: Mapping[str, float | str], options: TtsOptions, cancelled: Callable[[], bool]
    ) -> Iterator[TtsChunk]:
        self.check(params)
        body = {
            "text_lang": "en",
            "prompt_text": "",
            **params,
            "text": text,
            "speed_factor": float(params.get("speed_factor", 1.0)) * options.speed,
            "streaming_mode": True,
            "media_type": "wav",
        }
        request = urllib.request.Request(
            self.url + "/tts", json.dumps(body).encode(), {"content-type": "application/json"}
        )
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as e:
            raise ModelError(
                f"the GPT-SoVITS server refused: HTTP {e.code} {_message(e.read())}", code="tts_failed"
            ) from e
        except (urllib.error.URLError, OSError) as e:
            raise ModelError(
                f"the GPT-SoVITS server at {self.url} cannot be reached: {e}", code="tts_failed"
            ) from e
        with response:
            rate, pending = _read_header(response)
            while not cancelled():
                data = response.read1(CHUNK_BYTES)
                if not data:
                    break
                pending += data
                whole = len(pending) // 2 * 2
                if whole:
                    pcm = np.frombuffer(pending[:whole], "<i2").astype(np.float32) / 32768.0
                    pending = pending[whole:]
                    yield TtsChunk(pcm, rate)


class _Readable(Protocol):
    def read(self, n: int) -> bytes: ...


def _read_header(response: _Readable) -> tuple[int, bytes]:
    """The sample rate from the WAV header that opens the stream, and any bytes read past it."""
    data = b""
    while len(data) < 44:
        more = response.read(44 - len(data))
        if not more:
            raise ModelError("the GPT-SoVITS server sent no audio", code="tts_failed")
        data += more
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ModelError("the GPT-SoVITS server did not answer with WAV audio", code="tts_failed")
    channels, rate = struct.unpack("<HI", data[22:28])
    bits = struct.unpack("<H", data[34:36])[0]
    if channels != 1 or bits != 16:
        raise ModelError(f"unsupported GPT-SoVITS audio: {channels} channels, {bits} bits", code="tts_failed")
    # the data chunk may not be the first after fmt: skip any other chunks
    offset = 12
    while True:
        while len(data) < offset + 8:
            more = response.read(offset + 8 - len(data))
            if not more:
                raise ModelError("the GPT-SoVITS WAV stream ended in its header", code="tts_failed")
            data += more
        kind, size = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        if kind == b"data":
            return int(rate), data[offset + 8 :]
        offset += 8 + size


def _message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")
    return str(data.get("message") or data)[:300] if isinstance(data, dict) else str(data)[:300]


def load(settings: Settings, progress: models.ProgressFactory | None = None) -> GptSovitsEngine:
    if not settings.tts.gpt_sovits_url:
        raise ModelError(
            "a gpt-sovits voice needs --tts-gpt-sovits-url (the server's base URL)", code="bad_voice"
        )
    return GptSovitsEngine(settings.tts.gpt_sovits_url)
