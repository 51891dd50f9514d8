"""The speaker library: every voice the server can speak in, as data.

A voice is a record (id, display name, the engine and model it runs on, that engine's parameters,
language, licence) and a speaker embedding (a 256-dim resemblyzer d-vector, L2-normalised). Built-in
voices are defined here in code; voices added at run time (enrolled from reference audio) are a JSON
record and a ``.npy`` embedding each, under ``VOXLOOP_HOME/voices`` (or ``--voices-dir``). The library is
loaded once per process and shared by every session; a voice added or removed, by this process or by
another one (``voxloop voices enrol`` beside a running server), is seen at the next lookup: no restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.errors import VoxloopError

log = logging.getLogger(__name__)

VOICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
RECORD_VERSION = 1

Embedding = npt.NDArray[np.float32]


class VoiceError(VoxloopError):
    """A voice that cannot be used or stored. ``status`` is the HTTP status the REST API answers."""

    code = "bad_voice"

    def __init__(self, message: str, *, code: str | None = None, status: int = 422) -> None:
        super().__init__(message, code=code)
        self.status = status


@dataclass(frozen=True, slots=True)
class Voice:
    id: str
    name: str
    engine: str  # an engine name in agent/engines.py BACKENDS["tts"]
    model: str  # the model the engine runs (a CATALOGUE name)
    params: Mapping[str, float | str] = field(default_factory=dict)  # the engine's voice parameters
    language: str = "en-US"
    licence: str = ""
    description: str = ""
    builtin: bool = False
    created_at: float | None = None  # unix time, for enrolled voices
    reference: Mapping[str, float] = field(default_factory=dict)  # what enrolment measured
    consent: str = ""  # what the enroller gave as the speaker's consent (kept, not checked)

    def public(self) -> dict[str, Any]:
        """The record as the REST API and the protocol show it."""
        return {
            "id": self.id,
            "name": self.name,
            "engine": self.engine,
            "model": self.model,
            "params": dict(self.params),
            "language": self.language,
            "licence": self.licence,
            "description": self.description,
            "builtin": self.builtin,
            "created_at": self.created_at,
            "reference": dict(self.reference),
            "consent": self.consent,
        }


def check_id(voice_id: str) -> str:
    if not VOICE_ID.match(voice_id):
        raise VoiceError(
            f"bad voice id {voice_id!r}: 1-40 characters, lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit",
            code="bad_voice_id",
        )
    return voice_id


HIBARI_LICENCE = "Apache-2.0 (hibari-tts code and weights)"

# hibari's one voice and voices derived from it by reshaping its model's output (agent/voices/shape.py):
# distinct speakers by the embedding (docs/benchmarks.md has their similarity matrix).
BUILTIN: tuple[Voice, ...] = (
    Voice(
        "heart",
        "Heart",
        "hibari",
        "hibari-heart",
        {},
        licence=HIBARI_LICENCE,
        description="American English, female: hibari's own voice (distilled from Kokoro af_heart)",
        builtin=True,
    ),
    Voice(
        "ember",
        "Ember",
        "hibari",
        "hibari-heart",
        {"f0_scale": 0.8, "warp": 0.92, "tilt_db": -4.0},
        licence=HIBARI_LICENCE,
        description="lower, darker voice derived from heart (pitch, formants, spectral tilt)",
        builtin=True,
    ),
    Voice(
        "pip",
        "Pip",
        "hibari",
        "hibari-heart",
        {"f0_scale": 1.25, "f0_range": 1.3, "warp": 1.1, "tilt_db": 4.0},
        licence=HIBARI_LICENCE,
        description="brighter, higher voice derived from heart",
        builtin=True,
    ),
    Voice(
        "joe",
        "Joe",
        "piper",
        "piper-joe-medium",
        {},
        licence="non-commercial: fine-tuned from Piper's lessac voice (Blizzard 2013 data, non-commercial "
        "use without a licence from its owner); joe's recordings CC0, the package MIT",
        description="US English, male: a Piper VITS voice (the 'joe' extra, listed when installed)",
        builtin=True,
    ),
    Voice(
        "basalt",
        "Basalt",
        "hibari",
        "hibari-heart",
        {"f0_scale": 0.52, "f0_range": 0.8, "warp": 0.8, "tilt_db": 2.0},
        licence=HIBARI_LICENCE,
        description="low, male-range voice derived from heart",
        builtin=True,
    ),
)


# OpenAI's voice names, for clients written against its APIs: each speaks in the built-in voice
# closest in kind (lower/male names -> basalt, bright ones -> pip, warm ones -> ember, the rest -> heart).
# A voice enrolled under one of these ids takes precedence.
OPENAI_VOICES = {
    "alloy": "heart",
    "coral": "heart",
    "marin": "heart",
    "nova": "pip",
    "shimmer": "pip",
    "verse": "pip",
    "ballad": "ember",
    "fable": "ember",
    "sage": "ember",
    "ash": "basalt",
    "cedar": "basalt",
    "echo": "basalt",
    "onyx": "basalt",
}


class VoiceLibrary:
    """Built-in voices plus the records under ``root``. Thread-safe; every method is cheap except
    reads of files."""

    def __init__(self, root: Path, builtin: tuple[Voice, ...] = BUILTIN) -> None:
        self.root = root
        self._builtin = {v.id: v for v in builtin}
        self._stored: dict[str, Voice] = {}
        self._seen: int | None = None  # the folder's mtime at the last scan
        self._lock = threading.RLock()

    # -- lookups --------------------------------------------------------------------------------
    def voices(self) -> list[Voice]:
        with self._lock:
            self._rescan()
            return [*self._builtin.values(), *sorted(self._stored.values(), key=lambda v: v.id)]

    def ids(self) -> tuple[str, ...]:
        return tuple(v.id for v in self.voices())

    def get(self, voice_id: str) -> Voice:
        """The voice ``voice_id``; VoiceError (code ``bad_voice``) naming the known ones."""
        with self._lock:
            self._rescan()
            voice = self._builtin.get(voice_id) or self._stored.get(voice_id)
            if voice is None and voice_id in OPENAI_VOICES:
                voice = self._builtin.get(OPENAI_VOICES[voice_id])
            if voice is None:
                raise VoiceError(
                    f"unknown voice {voice_id!r}; known: {', '.join(self.ids())}",
                    code="bad_voice",
                    status=404,
                )
            return voice

    def exists(self, voice_id: str) -> bool:
        """A voice has this very id (an OpenAI name that only maps to a built-in one does not count)."""
        with self._lock:
            self._rescan()
            return voice_id in self._builtin or voice_id in self._stored

    def __contains__(self, voice_id: object) -> bool:
        try:
            self.get(str(voice_id))
        except VoiceError:
            return False
        return True

    def embedding(self, voice_id: str) -> Embedding | None:
        """The voice's stored speaker embedding; None for a built-in one not computed yet."""
        path = self._embedding_path(self.get(voice_id))
        return np.asarray(np.load(path), np.float32) if path.exists() else None

    def keep_embedding(self, voice_id: str, embedding: Embedding) -> Embedding:
        """Store a (built-in) voice's embedding, computed by whoever had the audio; returns it normalised."""
        emb = np.asarray(embedding, np.float32)
        emb = emb / max(float(np.linalg.norm(emb)), 1e-12)
        _atomic_write(self._embedding_path(self.get(voice_id)), lambda p: np.save(p, emb))
        return emb

    # -- changes --------------------------------------------------------------------------------
    def add(self, voice: Voice, embedding: Embedding) -> Voice:
        """Store an enrolled voice; VoiceError 409 (``voice_exists``) if the id is taken."""
        check_id(voice.id)
        with self._lock:
            if self.exists(voice.id):
                raise VoiceError(f"voice {voice.id!r} already exists", code="voice_exists", status=409)
            voice = replace(voice, builtin=False, created_at=voice.created_at or time.time())
            self.root.mkdir(parents=True, exist_ok=True)
            emb = np.asarray(embedding, np.float32)
            emb = emb / max(float(np.linalg.norm(emb)), 1e-12)
            _atomic_write(self.root / f"{voice.id}.npy", lambda p: np.save(p, emb))
            record = {"version": RECORD_VERSION, **voice.public()}
            _atomic_write(
                self.root / f"{voice.id}.json", lambda p: p.write_text(json.dumps(record, indent=2))
            )
            self._stored[voice.id] = voice
            self._seen = None
            log.info("voice %r added (%s on %s)", voice.id, voice.engine, voice.model)
            return voice

    def remove(self, voice_id: str) -> Voice:
        with self._lock:
            voice = self.get(voice_id)
            if voice.builtin:
                raise VoiceError(
                    f"voice {voice_id!r} is built in and cannot be removed", code="voice_builtin", status=409
                )
            for suffix in (".json", ".npy"):
                (self.root / f"{voice_id}{suffix}").unlink(missing_ok=True)
            self._stored.pop(voice_id, None)
            self._seen = None
            log.info("voice %r removed", voice_id)
            return voice

    # -- storage --------------------------------------------------------------------------------
    def _embedding_path(self, voice: Voice) -> Path:
        if voice.builtin:  # computed on first use, kept beside the enrolled ones
            return self.root / "builtin" / f"{voice.id}-{_params_key(voice)}.npy"
        return self.root / f"{voice.id}.npy"

    def _rescan(self) -> None:
        try:
            mtime = self.root.stat().st_mtime_ns
        except FileNotFoundError:
            self._stored, self._seen = {}, None
            return
        if mtime == self._seen:
            return
        stored: dict[str, Voice] = {}
        for path in sorted(self.root.glob("*.json")):
            try:
                voice = _from_record(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError, KeyError, VoxloopError) as e:
                log.warning("voice record %s is unreadable, skipped: %s", path, e)
                continue
            if voice.id in self._builtin or voice.id != path.stem:
                log.warning("voice record %s names %r, skipped", path, voice.id)
                continue
            stored[voice.id] = voice
        self._stored, self._seen = stored, mtime


def _from_record(data: Mapping[str, Any]) -> Voice:
    if data.get("version") != RECORD_VERSION:
        raise ValueError(f"record version {data.get('version')!r}, expected {RECORD_VERSION}")
    params = {
        str(k): v if isinstance(v, str) else float(v) for k, v in dict(data.get("params") or {}).items()
    }
    reference = {str(k): float(v) for k, v in dict(data.get("reference") or {}).items()}
    created = data.get("created_at")
    return Voice(
        id=check_id(str(data["id"])),
        name=str(data["name"]),
        engine=str(data["engine"]),
        model=str(data["model"]),
        params=params,
        language=str(data.get("language") or "en-US"),
        licence=str(data.get("licence") or ""),
        description=str(data.get("description") or ""),
        builtin=False,
        created_at=None if created is None else float(created),
        reference=reference,
        consent=str(data.get("consent") or ""),
    )


def _params_key(voice: Voice) -> str:
    """A short stable name for a built-in voice's parameters (its cached embedding follows them)."""
    text = json.dumps([voice.engine, voice.model, sorted(voice.params.items())])
    return f"{abs(hash_text(text)):016x}"[:12]


def hash_text(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
