"""The loaded models, once per process, shared by every session.

Each model sits behind its own one-thread worker: calls from all sessions queue there, so a model that
is not thread-safe (llama.cpp) is never entered twice, thread pools do not multiply on a small CPU,
and the event loop never blocks on a model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

import numpy as np

from agent import models
from agent.asr.base import Asr
from agent.config import Settings
from agent.errors import ConfigError
from agent.llm.base import Llm
from agent.tts.base import Tts
from agent.vad.base import VadModel

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class ModelWorker:
    """One thread that runs one model's calls in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"voxloop-{name}")
        self.pending = 0  # calls submitted and not finished (queued or running)

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` in the worker thread. Cancelling the await does not stop a call already running:
        its result is dropped when it finishes."""
        loop = asyncio.get_running_loop()
        self.pending += 1
        future = loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        future.add_done_callback(self._done)
        return await future

    def _done(self, _: object) -> None:
        self.pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class Engines:
    vad: VadModel
    asr: Asr
    llm: Llm
    tts: Tts
    vad_worker: ModelWorker
    asr_worker: ModelWorker
    llm_worker: ModelWorker
    tts_worker: ModelWorker
    load_s: dict[str, float]

    @property
    def names(self) -> dict[str, str]:
        return {"vad": self.vad.name, "asr": self.asr.name, "llm": self.llm.name, "tts": self.tts.name}

    def close(self) -> None:
        for w in (self.vad_worker, self.asr_worker, self.llm_worker, self.tts_worker):
            w.shutdown()


def load_vad(settings: Settings, progress: models.ProgressFactory | None = None) -> VadModel:
    from agent.vad.silero import SileroVad

    return SileroVad(models.prepare(models.CATALOGUE["silero-vad-v6"], progress), settings.webrtcvad_mode)


def _embedded(role: str, setting: str, progress: models.ProgressFactory | None) -> tuple[Path, str] | None:
    """The prepared path and name of the embedded model a setting names, or None for anything else."""
    entry = models.resolve_name(setting)
    if entry is None:
        return None
    if entry.role != role:
        raise ConfigError(f"{role}_model {setting!r} is a {entry.role} model")
    return models.prepare(entry, progress), entry.name


def load_asr(settings: Settings, progress: models.ProgressFactory | None = None) -> Asr:
    from agent.asr.faster_whisper import FasterWhisperAsr

    embedded = _embedded("asr", settings.asr_model, progress)
    if embedded is not None:
        source, name = str(embedded[0]), embedded[1]
    else:
        source, name = settings.asr_model, Path(settings.asr_model).name  # a folder or a hub name
    return FasterWhisperAsr(
        source,
        name=name,
        device=settings.asr_device,
        compute_type=settings.asr_compute_type,
        threads=settings.asr_threads,
        beam_size=settings.asr_beam_size,
        language=settings.asr_language,
        min_window_s=settings.asr_min_window_s,
    )


def load_llm(settings: Settings, progress: models.ProgressFactory | None = None) -> Llm:
    from agent.llm.llama_cpp import LlamaCppLlm

    embedded = _embedded("llm", settings.llm_model, progress)
    if embedded is not None:
        path, name = embedded
    else:
        path = Path(settings.llm_model)
        if not path.is_file():
            raise ConfigError(
                f"llm_model {settings.llm_model!r} is neither an embedded model nor a GGUF file"
            )
        name = path.stem
    return LlamaCppLlm(
        path,
        name=name,
        threads=settings.llm_threads,
        context_tokens=settings.llm_context_tokens,
        gpu_layers=settings.llm_gpu_layers,
        state_cache_mb=settings.llm_state_cache_mb,
    )


def load_tts(settings: Settings) -> Tts:
    from agent.tts.hibari import HibariTts

    if settings.tts_voice == "heart":
        models.prepare(models.CATALOGUE["hibari-heart"])  # verify the bundled model's sha256
    return HibariTts(settings.tts_voice, speed=settings.tts_speed)


def load(settings: Settings, progress: models.ProgressFactory | None = None, *, warm: bool = True) -> Engines:
    """Load every model (and warm it up, so the first turn is not the slow one)."""
    load_s: dict[str, float] = {}

    def timed(role: str, fn: Callable[[], R]) -> R:
        t0 = time.perf_counter()
        out = fn()
        load_s[role] = round(time.perf_counter() - t0, 3)
        log.info("loaded %s in %.2f s", role, load_s[role])
        return out

    vad = timed("vad", lambda: load_vad(settings, progress))
    asr = timed("asr", lambda: load_asr(settings, progress))
    llm = timed("llm", lambda: load_llm(settings, progress))
    tts = timed("tts", lambda: load_tts(settings))
    engines = Engines(
        vad,
        asr,
        llm,
        tts,
        ModelWorker("vad"),
        ModelWorker("asr"),
        ModelWorker("llm"),
        ModelWorker("tts"),
        load_s,
    )
    if warm:
        timed("warmup", lambda: _warm(engines, settings))
    return engines


def _warm(engines: Engines, settings: Settings) -> None:
    import threading

    from agent.llm.base import GenerationOptions

    engines.vad.stream().process(np.zeros(1024, np.int16))
    engines.asr.transcribe(np.zeros(16000, np.float32), final=True)
    engines.tts.synthesize("Hello.")
    # Evaluates the system prompt once: its KV state is then reused by every first turn.
    messages = [{"role": "system", "content": settings.system_prompt}, {"role": "user", "content": "Hi."}]
    for _ in engines.llm.stream_chat(messages, GenerationOptions(max_tokens=1), threading.Event()):
        pass
