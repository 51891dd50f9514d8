"""The REST routes under ``/v1/``: the speech API (OpenAI-compatible where OpenAI defines it) and the
speaker library (``GET /v1/voices``, ``GET /v1/voices/{id}`` with its embedding, ``POST /v1/voices`` to
enrol a voice from reference audio, ``DELETE /v1/voices/{id}``).

``POST /v1/audio/speech`` takes ``{model, input, voice | speaker_id, response_format, speed}`` and streams
the audio back as it is made (chunked): the first bytes leave once the first sentence is synthesized.
Errors have OpenAI's shape, ``{"error": {"message", "type", "code"}}``, with the HTTP status saying
what kind: 413 text over the limit, 422 a field out of range or an unknown voice, 429 too many
requests at once, 500 the engine failed before any audio. Every synthesis is logged (voice,
characters, audio seconds, real-time factor, time to first byte, client), the text itself only at
DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from agent.audio import float_to_pcm
from agent.config import Settings
from agent.engines import Engines, Stream
from agent.errors import VoxloopError
from agent.tts.base import TtsChunk, TtsOptions, TtsRequest, speech_bounds
from agent.tts.voiced import VoicedTts
from agent.voices.library import Voice, VoiceError
from streaming.encoders import CONTENT_TYPES, decode_audio, encoder

log = logging.getLogger(__name__)

# The speaker encoder's modules (agent/voices/embedding.py, enrol.py) import torch: they are imported
# in the handlers that need them, never when this module loads. torch brings its own libgomp; loaded
# before llama.cpp's (at server import, ahead of the models) it made every LLM decode ~25 % slower
# (first clause 241-286 ms against 191-204 ms, alternating benches on 2 cores).


class VoiceRef(BaseModel):
    """OpenAI's custom-voice reference: ``{"id": "..."}``."""

    id: str = Field(..., max_length=100)


class SpeechRequest(BaseModel):
    model: str = Field("voxloop", max_length=100, description="accepted for compatibility; the voice decides")
    input: str = Field(..., description="the text to speak")
    voice: str | VoiceRef | None = Field(None, description="a voice id from GET /v1/voices, or {id}")
    speaker_id: str | None = Field(None, max_length=100, description="an alias of voice")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.5, le=2.0)
    instructions: str | None = Field(None, max_length=4000, description="accepted; not used by these engines")
    stream_format: Literal["audio"] = "audio"


def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's body validation failures, in the same error shape as the rest (422)."""
    problems: list[dict[str, Any]] = list(getattr(exc, "errors", list)())
    text = "; ".join(f"{'.'.join(str(x) for x in p.get('loc', ()))}: {p.get('msg')}" for p in problems)
    return error(422, "bad_field", text or str(exc))


def error(status: int, code: str, message: str) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status)


class _Slots:
    """At most ``limit`` syntheses at once (429 beyond)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0


class _Lease:
    """One speech request's slot and TTS stream, given back exactly once however the request ends."""

    def __init__(self, slots: _Slots, stream: Stream[TtsChunk]) -> None:
        self._slots, self._stream = slots, stream
        self._held = True
        slots.busy += 1

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.busy -= 1
            self._stream.cancel()


class _LeasedStream(StreamingResponse):
    """A streamed answer that gives its lease back even when the body never starts (the client left
    before the first byte: Starlette then never runs the body's own ``finally``)."""

    def __init__(self, lease: _Lease, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lease = lease

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._lease.release()


def router(settings: Settings, engines: Engines) -> APIRouter:
    api = APIRouter(prefix="/v1")
    tts = engines.tts.model
    if not isinstance(tts, VoicedTts):
        raise TypeError("the REST API needs the speaker library's TTS (agent.tts.voiced.VoicedTts)")
    slots = _Slots(settings.tts.max_speech_requests)

    @api.post("/audio/speech", response_model=None)
    async def speech(body: SpeechRequest, request: Request) -> Response:
        text = body.input.strip()
        if not text:
            return error(422, "empty_text", "'input' is empty")
        if len(text) > settings.tts.max_chars:
            return error(
                413,
                "text_too_long",
                f"'input' has {len(text)} characters; the limit is {settings.tts.max_chars}",
            )
        voice_id = body.voice.id if isinstance(body.voice, VoiceRef) else body.voice or body.speaker_id
        try:
            voice = tts.check_voice(voice_id or tts.default_voice)
        except VoxloopError as e:
            return error(422, e.code, e.message)
        if slots.busy >= slots.limit:
            return error(429, "too_many_requests", f"{slots.limit} speech requests are running; try again")
        client = request.client.host if request.client else "?"
        stream = engines.tts.synthesize(TtsRequest(text, voice.id, TtsOptions(body.speed), first=True))
        lease = _Lease(slots, stream)
        started = time.perf_counter()
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            first = None
        except Exception as e:
            lease.release()
            log.exception("speech: voice %s failed (client %s)", voice.id, client)
            return error(500, "tts_failed", f"the {voice.engine} engine failed: {type(e).__name__}: {e}")
        except BaseException:  # cancelled while waiting (the client went away)
            lease.release()
            raise
        log.debug("speech: voice %s, text %r", voice.id, text)

        async def body_bytes() -> AsyncIterator[bytes]:
            out = encoder(body.response_format, tts.sample_rate)
            samples, first_byte_s = 0, None
            try:
                chunk: TtsChunk | None = first
                while chunk is not None:
                    pcm = _trimmed(chunk, first_chunk=samples == 0)
                    samples += len(pcm)
                    data = await asyncio.to_thread(out.feed, pcm)
                    if data:
                        if first_byte_s is None:
                            first_byte_s = time.perf_counter() - started
                        yield data
                    chunk = await anext(stream, None)
                yield await asyncio.to_thread(out.close)
            finally:
                lease.release()
            elapsed = time.perf_counter() - started
            audio_s = samples / tts.sample_rate
            log.info(
                "speech: voice %s, %d characters, %.2f s of audio, RTF %.3f, first byte %.0f ms, %s, "
                "client %s",
                voice.id,
                len(text),
                audio_s,
                elapsed / audio_s if audio_s else 0.0,
                (first_byte_s or elapsed) * 1e3,
                body.response_format,
                client,
            )

        return _LeasedStream(
            lease,
            body_bytes(),
            media_type=CONTENT_TYPES[body.response_format],
            headers={"x-voxloop-voice": voice.id, "x-voxloop-sample-rate": str(tts.sample_rate)},
        )

    @api.get("/voices")
    async def list_voices() -> dict[str, Any]:
        return {
            "object": "list",
            "default": tts.default_voice,
            "data": [v.public() for v in tts.library.voices()],
        }

    enrolling = _Slots(1)  # one fit at a time: it takes seconds of CPU

    async def enrol_from(request: Request, file_field: str) -> Voice | JSONResponse:
        size = int(request.headers.get("content-length") or 0)
        if size > settings.tts.max_reference_bytes + 65536:
            return error(
                413,
                "reference_too_large",
                f"the upload is {size} bytes; the limit is {settings.tts.max_reference_bytes}",
            )
        try:
            form = await request.form(max_files=1, max_fields=8)
        except Exception as e:  # the multipart parser's own errors: a malformed body
            return error(422, "bad_form", f"a voice is enrolled with multipart/form-data: {e}")
        upload = form.get(file_field)
        name = form.get("name")
        if isinstance(upload, str) or upload is None:
            return error(422, "bad_form", f"the form needs a file field {file_field!r}")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            return error(422, "bad_form", "the form needs a field 'name' (1-100 characters)")
        voice_id = form.get("id")
        voice_id = voice_id if isinstance(voice_id, str) and voice_id else slug(name)
        base = form.get("base")
        consent = form.get("consent")
        data = await upload.read(settings.tts.max_reference_bytes + 1)
        if len(data) > settings.tts.max_reference_bytes:
            return error(413, "reference_too_large", f"the limit is {settings.tts.max_reference_bytes} bytes")
        if enrolling.busy >= enrolling.limit:
            return error(429, "too_many_requests", "a voice is being enrolled; try again in a few seconds")
        from agent.voices.enrol import Limits, enrol  # torch: not at import (above)

        enrolling.busy += 1
        try:
            audio, rate = await asyncio.to_thread(decode_audio, data, settings.tts.max_reference_s)
            limits = Limits(
                min_speech_s=settings.tts.min_reference_s, max_audio_s=settings.tts.max_reference_s
            )
            voice, _ = await asyncio.to_thread(
                enrol,
                tts,
                voice_id,
                name,
                audio,
                rate,
                base=base if isinstance(base, str) and base else "heart",
                limits=limits,
                consent=consent if isinstance(consent, str) else "",
            )
        except ValueError as e:
            return error(422, "bad_reference", f"reference audio: {e}")
        except VoiceError as e:
            return error(e.status, e.code, e.message)
        finally:
            enrolling.busy -= 1
        client = request.client.host if request.client else "?"
        log.info("voice %r enrolled from %.1f s of audio (client %s)", voice.id, len(audio) / rate, client)
        return voice

    @api.post("/voices", response_model=None, status_code=201)
    async def enrol_voice(request: Request) -> JSONResponse:
        """Multipart form: ``audio`` (a file: WAV, mp3, ogg, flac...), ``name``, ``id``? (default: from
        the name), ``base``? (the voice to adapt, default heart), ``consent``? (recorded). 201 with
        the new voice."""
        voice = await enrol_from(request, "audio")
        return voice if isinstance(voice, JSONResponse) else JSONResponse(voice.public(), status_code=201)

    @api.post("/audio/voices", response_model=None)
    async def enrol_openai(request: Request) -> JSONResponse:
        """OpenAI's custom-voice route (``client.audio.voices.create(audio_sample=, name=, consent=)``):
        the same enrolment, answered with OpenAI's voice object (and voxloop's fields)."""
        voice = await enrol_from(request, "audio_sample")
        if isinstance(voice, JSONResponse):
            return voice
        openai_shape = {
            "object": "audio.voice",
            "type": "audio_sample",
            "created_at": int(voice.created_at or 0),
        }
        return JSONResponse({**voice.public(), **openai_shape})

    @api.delete("/voices/{voice_id}", response_model=None)
    @api.delete("/audio/voices/{voice_id}", response_model=None)
    async def remove_voice(voice_id: str) -> dict[str, Any] | JSONResponse:
        try:
            voice = tts.library.remove(voice_id)
        except VoiceError as e:
            return error(e.status, e.code, e.message)
        return {"id": voice.id, "object": "audio.voice.deleted", "deleted": True}

    @api.get("/voices/{voice_id}", response_model=None)
    async def get_voice(voice_id: str) -> dict[str, Any] | JSONResponse:
        try:
            voice = tts.library.get(voice_id)
        except VoiceError as e:
            return error(e.status, e.code, e.message)
        from agent.voices.embedding import SAMPLE_TEXT, shared_encoder

        embedding = tts.library.embedding(voice.id)
        if embedding is None:  # a built-in voice's embedding is made on first request
            audio = await _synthesized(engines, voice.id, SAMPLE_TEXT)
            embedding = await asyncio.to_thread(shared_encoder().embed, audio, tts.sample_rate)
            tts.library.keep_embedding(voice.id, embedding)
        return {**voice.public(), "embedding": [round(float(x), 6) for x in embedding]}

    return api


def slug(name: str) -> str:
    """A voice id from a display name: "Ada Lovelace" -> "ada-lovelace"."""
    out = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return out or "voice"


def _trimmed(chunk: TtsChunk, *, first_chunk: bool) -> np.ndarray:
    """The chunk as PCM, its model padding cut: all of the lead on the first chunk (the first byte
    comes sooner), a sentence's pause kept after each."""
    start, end = speech_bounds(
        chunk.audio, chunk.sample_rate, lead_s=0.015 if first_chunk else 0.1, tail_s=0.3
    )
    return float_to_pcm(chunk.audio[start:end])


async def _synthesized(engines: Engines, voice_id: str, text: str) -> np.ndarray:
    parts = []
    async with engines.tts.synthesize(TtsRequest(text, voice_id)) as stream:
        async for chunk in stream:
            parts.append(chunk.audio)
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)
