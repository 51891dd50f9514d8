"""Smart Turn v3.2 (pipecat-ai's audio end-of-turn model, BSD-2-Clause), on onnxruntime.

The model reads the last 8 s of the utterance as Whisper log-mel features (80 x 800, the audio
left-padded with silence) and gives P(turn complete). The features come from transformers'
``WhisperFeatureExtractor`` (8 s chunks), which computes them with torch's STFT. The ONNX file ships
inside the ``pipecat-ai`` wheel; voxloop reads the file and never imports ``pipecat``.
"""

from __future__ import annotations

import time

import numpy as np
import onnxruntime
import torch
from transformers import WhisperFeatureExtractor

from agent import models
from agent.config import Settings
from agent.eot.base import EotRequest, EotScore

WINDOW_S = 8
RATE = 16000


class SmartTurn:
    name = "smart-turn-v3.2"

    def __init__(self, path: str, *, threads: int = 1) -> None:
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            path, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        # torch's intra-op pool (OpenMP, shared with llama.cpp's libgomp) gets the model's threads:
        # a 2-thread torch team beside llama.cpp's on 2 cores made libgomp throttle its spin-waits,
        # and llama.cpp decoded at half speed (14 tokens/s against 29). The STFT of 8 s needs no more.
        torch.set_num_threads(threads)
        self._features = WhisperFeatureExtractor(chunk_length=WINDOW_S)  # type: ignore[no-untyped-call]

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(80, 800) log-mel features of the last 8 s of ``audio`` (left-padded with silence)."""
        n = WINDOW_S * RATE
        window = np.asarray(audio[-n:], np.float32)
        window = np.pad(window, (n - len(window), 0))
        with torch.inference_mode():  # the extractor's STFT and mel filters run in torch
            out = self._features(
                window,
                sampling_rate=RATE,
                return_tensors="pt",
                padding="max_length",
                max_length=n,
                truncation=True,
                do_normalize=True,
            )
            feats: np.ndarray = out.input_features[0].to(torch.float32).numpy()
        return feats

    def score_batch(self, requests: list[EotRequest]) -> list[EotScore]:
        started = time.perf_counter()
        batch = np.stack([self.features(r.audio) for r in requests])
        logits = np.asarray(self._session.run(None, {self._input: batch})[0], np.float32).reshape(-1)
        elapsed = (time.perf_counter() - started) / len(requests)
        # The exported graph ends in a sigmoid: its "logits" output is already a probability.
        return [EotScore(float(p), elapsed) for p in logits]


def load(settings: Settings, progress: models.ProgressFactory | None = None) -> SmartTurn:
    path = models.prepare(models.CATALOGUE["smart-turn-v3.2"], progress)

    return SmartTurn(str(path), threads=settings.eot.threads)
