"""Piper voices (VITS, 22.05 kHz): on onnxruntime (the default on CPU) or on voxloop's own torch VITS
(agent/tts/vits.py: same weights; per-phoneme durations, so word timings; fixed-shape frame buckets).

Text goes through hibari's G2P and agent/tts/ipa.py to Piper's phoneme ids, one sentence at a time;
no espeak (GPL) is involved. A voice's parameters are Piper's inference scales: ``noise_scale``
(variation of the sound), ``noise_w`` (variation of the timing) and ``length_scale`` (slower > 1).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime
import torch
from hibari import Hibari
from hibari.g2p import G2P

from agent import models
from agent.config import Settings
from agent.errors import ModelError
from agent.tts.base import TtsChunk, TtsOptions, WordTiming
from agent.tts.ipa import PhonemeIds, to_espeak, to_ids
from agent.tts.vits import Vits, load_vits

BUCKET_FRAMES = 64  # the torch runtime pads the flow and decoder input to a multiple of this
PARAMS = {"noise_scale": (0.0, 1.5), "noise_w": (0.0, 1.5), "length_scale": (0.5, 2.0)}
RUNTIMES = ("onnx", "torch")


class PiperEngine:
    name = "piper"

    def __init__(self, model: Path, *, runtime: str = "onnx", threads: int = 1, seed: int = 0) -> None:
        if runtime not in RUNTIMES:
            raise ModelError(f"unknown Piper runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
        config = json.loads(model.with_name(model.name + ".json").read_text())
        self.sample_rate = int(config["audio"]["sample_rate"])
        self.id_map: dict[str, list[int]] = config["phoneme_id_map"]
        self.defaults = {k: float(config["inference"][k]) for k in PARAMS}
        self.runtime = runtime
        self._g2p = G2P(british=False)
        self._lock = threading.Lock()  # the torch model and its noise generator: one sentence at a time
        self._session: onnxruntime.InferenceSession | None = None
        self._vits: Vits | None = None
        self._rng = np.random.default_rng(seed)
        self._generator = torch.Generator().manual_seed(seed)
        if runtime == "onnx":
            opts = onnxruntime.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            self._session = onnxruntime.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        else:
            self._vits = load_vits(str(model))
            self.hop = self._vits.cfg.hop

    def check(self, params: Mapping[str, float | str]) -> None:
        for key, value in params.items():
            if key not in PARAMS:
                raise ModelError(
                    f"unknown Piper voice parameter {key!r}; known: {', '.join(PARAMS)}", code="bad_voice"
                )
            low, high = PARAMS[key]
            if isinstance(value, str) or not low <= float(value) <= high:
                raise ModelError(
                    f"Piper voice parameter {key}={value} is outside [{low}, {high}]", code="bad_voice"
                )

    def phonemes(self, sentence: str) -> PhonemeIds:
        return to_ids(to_espeak(self._g2p(sentence)), self.id_map)

    def render(
        self, text: str, params: Mapping[str, float | str], options: TtsOptions, cancelled: Callable[[], bool]
    ) -> Iterator[TtsChunk]:
        """One chunk per sentence; with the torch runtime each carries its words' timings."""
        self.check(params)
        scales = {**self.defaults, **{k: float(v) for k, v in params.items()}}
        length_scale = scales["length_scale"] / max(options.speed, 0.1)
        for sentence in Hibari.split_sentences(text):
            if cancelled():
                return
            phonemes = self.phonemes(sentence)
            if len(phonemes.ids) < 5:  # BOS, pad, EOS and no sound
                continue
            if self._session is not None:
                yield TtsChunk(
                    self._onnx(phonemes.ids, scales["noise_scale"], length_scale, scales["noise_w"]),
                    self.sample_rate,
                )
            else:
                audio, durations = self.synthesize_torch(
                    phonemes.ids, scales["noise_scale"], length_scale, scales["noise_w"]
                )
                yield TtsChunk(
                    audio,
                    self.sample_rate,
                    word_timings(sentence, phonemes, durations, self.hop / self.sample_rate),
                )

    def _onnx(
        self, ids: list[int], noise_scale: float, length_scale: float, noise_w: float
    ) -> npt.NDArray[np.float32]:
        assert self._session is not None  # noqa: S101 - the onnx runtime was chosen
        feeds = {
            "input": np.asarray([ids], np.int64),
            "input_lengths": np.asarray([len(ids)], np.int64),
            "scales": np.asarray([noise_scale, length_scale, noise_w], np.float32),
        }
        return np.asarray(self._session.run(None, feeds)[0], np.float32).reshape(-1)

    def synthesize_torch(
        self, ids: list[int], noise_scale: float, length_scale: float, noise_w: float, *, bucket: bool = True
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Audio and frames per id. The flow and decoder run on the prior padded to a multiple of
        ``BUCKET_FRAMES`` (``bucket=False``: exactly its length), the output cut to the real length."""
        if self._vits is None:
            raise ModelError("this Piper engine runs on onnxruntime; the torch path needs runtime 'torch'")
        with self._lock, torch.inference_mode():
            prior = self._vits.prior(
                torch.tensor([ids]), length_scale=length_scale, noise_w=noise_w, generator=self._generator
            )
            noise = torch.randn(prior.m.shape, generator=self._generator) * noise_scale
            z_p = prior.m + noise * torch.exp(prior.logs)
            frames = prior.frames
            padded = -(-frames // BUCKET_FRAMES) * BUCKET_FRAMES if bucket else frames
            z_p = torch.nn.functional.pad(z_p, (0, padded - z_p.shape[2]))
            audio = self._vits.synthesize_frames(z_p, torch.tensor([frames]))[0, : frames * self.hop]
        return audio.numpy().astype(np.float32), prior.durations


def word_timings(
    sentence: str, phonemes: PhonemeIds, durations: npt.NDArray[np.int64], frame_s: float
) -> tuple[WordTiming, ...] | None:
    """Each word's span from its phonemes' durations; None when the G2P's words cannot be matched
    one to one with the sentence's (a number read as several words)."""
    words = [w for w in sentence.split() if any(c.isalnum() for c in w)]
    owners = np.asarray(phonemes.word_of)
    if not words or owners.max(initial=-1) + 1 != len(words):
        return None
    ends = np.cumsum(durations)
    starts = ends - durations
    out = []
    for i, word in enumerate(words):
        where = np.nonzero(owners == i)[0]
        out.append(WordTiming(word, float(starts[where[0]] * frame_s), float(ends[where[-1]] * frame_s)))
    return tuple(out)


def load(settings: Settings, progress: models.ProgressFactory | None = None) -> PiperEngine:
    path = models.prepare(models.CATALOGUE["piper-joe-medium"], progress)
    return PiperEngine(path, runtime=settings.tts.piper_runtime)
