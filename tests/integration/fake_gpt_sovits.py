"""A small stand-in for a GPT-SoVITS ``api_v2.py`` server, for testing voxloop's adapter: ``POST /tts``
(and ``GET /tts`` with query parameters) as its documentation describes them. It "clones" by speaking
the text with the Debian flite voice its reference file is named after (``refs/awb.wav`` -> awb), at
32 kHz, streamed as a WAV header with unknown length and then PCM in 0.1 s pieces; a missing field
or an unknown reference gets HTTP 400 with ``{"message": ...}``, as the real server answers."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import soxr

from streaming.devtools.references import FLITE_VOICES, flite
from streaming.encoders import wav_header

RATE = 32000


class FakeGptSovits:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                self._tts(url.path, {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError:
                    return self._error(400, "the body is not JSON")
                self._tts(urllib.parse.urlparse(self.path).path, body)

            def _error(self, status: int, message: str) -> None:
                data = json.dumps({"message": message}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _tts(self, path: str, req: dict[str, Any]) -> None:
                if path != "/tts":
                    return self._error(404, f"no route {path}")
                fake.requests.append(req)
                for key in ("text", "text_lang", "ref_audio_path", "prompt_lang"):
                    if not req.get(key):
                        return self._error(400, f"{key} is required")
                voice = str(req["ref_audio_path"]).rsplit("/", 1)[-1].removesuffix(".wav")
                if voice not in FLITE_VOICES:
                    return self._error(400, f"reference audio {req['ref_audio_path']} not found")
                audio, rate = flite(str(req["text"]), voice)
                pcm = (np.clip(soxr.resample(audio, rate, RATE), -1, 1) * 32767).astype("<i2")
                self.send_response(200)
                self.send_header("content-type", "audio/wav")
                self.end_headers()
                self.wfile.write(wav_header(RATE))
                step = RATE // 10
                for i in range(0, len(pcm), step):
                    self.wfile.write(pcm[i : i + step].tobytes())
                    self.wfile.flush()
                    time.sleep(0.005)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeGptSovits:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
