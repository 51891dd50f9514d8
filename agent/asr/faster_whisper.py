"""faster-whisper (CTranslate2) backend.

Short-window decoding: Whisper was trained on 30 s windows, and faster-whisper pads every input to
30 s, so the encoder costs the same for a 2 s question as for 30 s of speech (~300 ms for tiny.en on
2 cores). CTranslate2's encoder accepts a shorter window; padded to max(``min_window_s``, audio + 3 s)
it gives the same transcripts on short utterances in ~80-110 ms (measured 2026-11-22, docs/benchmarks.md).
Too little padding makes Whisper loop on its own words, so a decode that runs into its length cap
(a loop) is redone the standard way. ``min_window_s=0`` turns the short window off.

faster-whisper's segments are a lazy generator: materialized here, in the worker thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import ctranslate2
import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer

from agent import models
from agent.asr.base import ASR_RATE, AsrPurpose, AsrRequest, Transcript
from agent.config import Settings

WINDOW_PAD_S = 3.0  # silence after the speech inside the window: where Whisper learned to stop
TOKENS_PER_S = 8.0  # generous speech rate; a decode longer than this (x audio) is a repetition loop


class FasterWhisperAsr:
    def __init__(
        self,
        model: str,
        *,
        name: str,
        device: str = "cpu",
        compute_type: str = "int8",
        threads: int = 2,
        beam_size: int = 1,
        language: str = "en",
        min_window_s: float = 10.0,
    ) -> None:
        self.name = name
        self._model = WhisperModel(model, device=device, compute_type=compute_type, cpu_threads=threads)
        self._beam_size = beam_size
        self._language = language or None
        self._min_window_s = min_window_s
        multilingual = self._model.model.is_multilingual
        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            multilingual,
            task="transcribe",
            language=(self._language or "en") if multilingual else None,
        )
        self.short_window_fallbacks = 0

    def transcribe(self, audio: npt.NDArray[np.float32], *, final: bool) -> Transcript:
        t0 = time.perf_counter()
        audio_s = len(audio) / ASR_RATE
        beam = self._beam_size if final else 1
        heard = None
        if 0 < self._min_window_s and audio_s + WINDOW_PAD_S <= 30.0 and self._language is not None:
            heard = self._short_window(audio, audio_s, beam)
            if heard is None:
                self.short_window_fallbacks += 1
        if heard is None:
            heard = self._standard(audio, beam)
        text, logprob, no_speech = heard
        return Transcript(text, self._language or "", audio_s, time.perf_counter() - t0, logprob, no_speech)

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[Transcript]:
        """One by one: on a CPU a batch would only make the first request wait for the last. (The GPU
        issue batches the encoder over padded short windows here.)"""
        return [self.transcribe(r.audio, final=r.purpose is AsrPurpose.FINAL) for r in requests]

    def _short_window(
        self, audio: npt.NDArray[np.float32], audio_s: float, beam: int
    ) -> tuple[str, float | None, float | None] | None:
        window_s = min(30.0, max(self._min_window_s, math.ceil(audio_s + WINDOW_PAD_S)))
        frames = int(window_s * 100)
        features = self._model.feature_extractor(audio, padding=frames * 160)[:, :frames]
        batch = np.ascontiguousarray(features[None].astype(np.float32))
        prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        cap = int(audio_s * TOKENS_PER_S) + 8
        result = self._model.model.generate(
            ctranslate2.StorageView.from_array(batch),
            [prompt],
            beam_size=beam,
            max_length=len(prompt) + cap,
            suppress_blank=True,
            suppress_tokens=[-1],
            return_scores=True,  # length-normalised log-probability of the sequence
            return_no_speech_prob=True,
        )
        tokens = [t for t in result[0].sequences_ids[0] if t < self._tokenizer.eot]
        if len(tokens) >= cap:
            return None  # ran into the cap: Whisper is repeating itself
        score = float(result[0].scores[0]) if result[0].scores else None
        return str(self._tokenizer.decode(tokens)).strip(), score, float(result[0].no_speech_prob)

    def _standard(self, audio: npt.NDArray[np.float32], beam: int) -> tuple[str, float | None, float | None]:
        segments, _ = self._model.transcribe(
            audio,
            language=self._language,
            beam_size=beam,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            temperature=0.0,
        )
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        if not segments:
            return text, None, None
        return (
            text,
            float(np.mean([s.avg_logprob for s in segments])),
            float(np.mean([s.no_speech_prob for s in segments])),
        )


def load(settings: Settings, progress: models.ProgressFactory | None = None) -> FasterWhisperAsr:
    """The ASR model ``settings.asr.model`` names: embedded ('tiny.en', 'base'), a folder, or a hub name."""
    embedded = models.prepare_named("asr", settings.asr.model, progress)
    if embedded is not None:
        source, name = str(embedded[0]), embedded[1]
    else:
        source, name = settings.asr.model, Path(settings.asr.model).name  # a folder or a hub name
    return FasterWhisperAsr(
        source,
        name=name,
        device=settings.asr.device,
        compute_type=settings.asr.compute_type,
        threads=settings.asr.threads,
        beam_size=settings.asr.beam_size,
        language=settings.asr.language,
        min_window_s=settings.asr.min_window_s,
    )
