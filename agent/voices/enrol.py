"""Enrolment: a derived voice fitted to reference audio (parametric adaptation, not neural cloning).

The reference is checked (format and length, silence, clipping, one speaker throughout) and analysed:
its speaker embedding, its pitch (median and spread of f0). The fit then shapes the base voice
(agent/voices/shape.py): pitch scale and range from the reference's f0 against the base voice's own,
then a search over the formant warp and the spectral tilt for the shape whose speech the speaker
encoder finds closest to the reference. Candidates are scored on tuning sentences and the result is
measured on other sentences, so the similarity it reports is not fitted to its own test.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soxr

from agent.tts.base import TtsOptions
from agent.tts.hibari import HibariEngine
from agent.tts.voiced import VoicedTts
from agent.voices.embedding import RATE, SpeakerEncoder, cosine, shared_encoder
from agent.voices.library import Voice, VoiceError, check_id
from agent.voices.shape import EQ_HZ, VOICED_HZ, Shape

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

TUNE_TEXT = (
    "Four hours of steady work faced us. A large size in stockings is hard to sell. "
    "The boy was there when the sun rose."
)
CHECK_TEXT = (
    "A rod is used to catch pink salmon. The source of the huge river is the clear spring. "
    "Help the woman get back to her feet."
)


@dataclass(frozen=True, slots=True)
class Limits:
    """What reference audio must be (``Settings.tts``: min/max_reference_s)."""

    min_speech_s: float = 5.0  # speech left after pauses are cut
    max_audio_s: float = 120.0
    silence_dbfs: float = -50.0  # quieter than this overall: silent
    max_clipped: float = 0.005  # fraction of samples at full scale
    min_consistency: float = 0.88  # cosine between the two halves of the reference's speaker clusters


@dataclass(frozen=True, slots=True)
class Reference:
    embedding: F32
    bands_db: tuple[float | None, ...]  # long-term level per EQ band (None: above its bandwidth)
    speech_s: float
    f0_median_hz: float
    f0_log_std: float  # spread of log f0 over voiced frames
    consistency: float  # 1.0 = one speaker throughout; two speakers measured 0.61-0.84


@dataclass(frozen=True, slots=True)
class Fit:
    shape: Shape
    similarity: float  # the fitted voice's embedding vs the reference, on held-out sentences
    base_similarity: float  # the base voice's, on the same sentences
    candidates: int
    elapsed_s: float


def analyse(audio: F32, sample_rate: int, encoder: SpeakerEncoder, limits: Limits = Limits()) -> Reference:
    """Check and analyse reference audio; VoiceError (422) saying what is wrong with it."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1 or sample_rate < 8000 or sample_rate > 192000:
        raise VoiceError(
            f"reference audio must be mono at 8-192 kHz, got {sample_rate} Hz", code="bad_reference"
        )
    duration_s = len(audio) / sample_rate
    if duration_s > limits.max_audio_s:
        raise VoiceError(
            f"reference audio is {duration_s:.0f} s long; the limit is {limits.max_audio_s:.0f} s",
            code="reference_too_long",
        )
    level = 20.0 * np.log10(max(float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))), 1e-10))
    if level < limits.silence_dbfs:
        raise VoiceError(f"reference audio is silent ({level:.0f} dBFS)", code="reference_silent")
    clipped = float(np.mean(np.abs(audio) >= 0.999))
    if clipped > limits.max_clipped:
        raise VoiceError(
            f"reference audio is clipped ({100 * clipped:.1f} % of samples at full scale); record it quieter",
            code="reference_clipped",
        )
    try:
        partials = encoder.embed_partials(audio, sample_rate)
    except ValueError as e:
        raise VoiceError("no speech found in the reference audio", code="reference_silent") from e
    speech_s = len(partials) / 1.3  # windows come 1.3 times a second of speech
    if speech_s < limits.min_speech_s:
        raise VoiceError(
            f"reference audio has ~{speech_s:.1f} s of speech; at least {limits.min_speech_s:.0f} s "
            "is needed (about a minute gives the best fit)",
            code="reference_too_short",
        )
    consistency = speaker_consistency(partials)
    if consistency < limits.min_consistency:
        raise VoiceError(
            f"reference audio sounds like more than one speaker (consistency {consistency:.2f} < "
            f"{limits.min_consistency}); send one speaker's voice",
            code="reference_multi_speaker",
        )
    mean = partials.mean(axis=0)
    embedding = np.asarray(mean / max(float(np.linalg.norm(mean)), 1e-12), np.float32)
    f0 = pitch_track(audio, sample_rate)
    voiced = f0[f0 > 0]
    if len(voiced) < 20:
        raise VoiceError("no voiced speech found in the reference audio", code="reference_silent")
    log_f0 = np.log(voiced)
    return Reference(
        embedding,
        band_levels(audio, sample_rate),
        speech_s,
        float(np.exp(np.median(log_f0))),
        float(np.std(log_f0)),
        consistency,
    )


def band_levels(audio: F32, sample_rate: int) -> tuple[float | None, ...]:
    """Long-term level (dB) of the louder frames in each octave band around ``EQ_HZ``, relative to
    the mean of the 500 Hz-2 kHz bands; None for a band the audio's rate cannot hold."""
    n = 1024
    if len(audio) < n:
        return tuple(None for _ in EQ_HZ)
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(audio, np.float32), n)[:: n // 2]
    power = np.abs(np.fft.rfft(frames * np.hanning(n), axis=1)) ** 2
    loud = power.sum(axis=1)
    power = power[loud >= np.percentile(loud, 50)].mean(axis=0)
    hz = np.fft.rfftfreq(n, 1.0 / sample_rate)
    levels: list[float | None] = []
    for centre in EQ_HZ:
        low, high = centre / np.sqrt(2.0), centre * np.sqrt(2.0)
        inside = (hz >= low) & (hz < min(high, sample_rate / 2))
        if high > sample_rate / 2 * 1.05 or not inside.any():
            levels.append(None)
        else:
            levels.append(float(10.0 * np.log10(max(float(power[inside].mean()), 1e-20))))
    mid = [x for x, c in zip(levels, EQ_HZ, strict=True) if x is not None and 500 <= c <= 2000]
    ref = float(np.mean(mid)) if mid else 0.0
    return tuple(None if x is None else x - ref for x in levels)


def speaker_consistency(partials: F32) -> float:
    """Cosine between the centroids of two clusters of the windows' embeddings (spherical 2-means):
    ~0.95 when one speaker talks throughout, 0.6-0.84 for two (measured with flite voices)."""
    if len(partials) < 4:
        return 1.0
    mean = partials.mean(axis=0)
    a = partials[int(np.argmin(partials @ mean))]
    b = partials[int(np.argmin(partials @ a))]
    for _ in range(20):
        in_b = (partials @ a) < (partials @ b)
        if in_b.all() or not in_b.any():
            return 1.0
        a, b = _unit(partials[~in_b].mean(axis=0)), _unit(partials[in_b].mean(axis=0))
    return float(a @ b)


def _unit(x: F32) -> F32:
    return np.asarray(x / max(float(np.linalg.norm(x)), 1e-12), np.float32)


def pitch_track(audio: F32, sample_rate: int, fmin: float = 60.0, fmax: float = 400.0) -> F32:
    """f0 per 10 ms (0 = unvoiced): normalised autocorrelation of 40 ms frames at 16 kHz, with the
    first peak above 0.85 of the best one (guards against octave errors)."""
    wav = np.asarray(soxr.resample(audio, sample_rate, RATE) if sample_rate != RATE else audio, np.float32)
    frame, hop = int(0.04 * RATE), int(0.01 * RATE)
    if len(wav) < frame:
        return np.zeros(0, np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(wav, frame)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sqrt(np.mean(frames**2, axis=1))
    loud = energy > max(float(np.percentile(energy, 90)) * 0.1, 1e-4)
    n_fft = 2 * frame
    spec = np.fft.rfft(frames * np.hanning(frame), n_fft, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, n_fft, axis=1)[:, :frame]
    ac /= np.maximum(ac[:, :1], 1e-12)
    lo, hi = int(RATE / fmax), int(RATE / fmin)
    band = ac[:, lo:hi]
    best = band.max(axis=1)
    f0 = np.zeros(len(frames), np.float32)
    for i in np.nonzero(loud & (best > 0.5))[0]:
        lag = lo + int(np.argmax(band[i] >= 0.85 * best[i]))
        f0[i] = RATE / lag
    return f0


Render = Callable[[str, Shape], F32]  # text, shape -> audio at the engine's output rate


def fit(
    reference: Reference,
    render: Render,
    rate: int,
    base_f0: F32,
    encoder: SpeakerEncoder,
    *,
    tune_text: str = TUNE_TEXT,
    check_text: str = CHECK_TEXT,
) -> Fit:
    """The shape of the base voice closest to the reference (by the speaker encoder)."""
    started = time.perf_counter()
    voiced = base_f0[base_f0 > VOICED_HZ]
    base_log = np.log(voiced) if len(voiced) else np.log(np.array([200.0]))
    lo, hi = Shape.LIMITS["f0_scale"]
    f0_scale = float(np.clip(reference.f0_median_hz / float(np.exp(np.median(base_log))), lo, hi))
    f0_range = float(np.clip(reference.f0_log_std / max(float(np.std(base_log)), 1e-3), 0.5, 2.0))
    scores: dict[tuple[float, float], float] = {}

    def score(warp: float, tilt: float) -> float:
        key = (round(warp, 3), round(tilt, 2))
        if key not in scores:
            shape = Shape(f0_scale=f0_scale, f0_range=f0_range, warp=key[0], tilt_db=key[1])
            scores[key] = cosine(encoder.embed(render(tune_text, shape), rate), reference.embedding)
        return scores[key]

    # coordinate search: warp (the strongest lever), then tilt, then warp again, finer
    warp = max(np.arange(0.72, 1.25, 0.04), key=lambda w: score(float(w), 0.0))
    tilt = max((-6.0, -3.0, 0.0, 3.0, 6.0), key=lambda t: score(float(warp), t))
    warp = max((warp - 0.02, warp, warp + 0.02), key=lambda w: score(float(w), tilt))
    shape = Shape(f0_scale=f0_scale, f0_range=f0_range, warp=round(float(warp), 3), tilt_db=tilt)
    tried = len(scores)
    # then an equaliser toward the reference's long-term spectrum, kept only if it brings it closer
    best = scores[(round(float(warp), 3), round(tilt, 2))]
    made = band_levels(render(tune_text, shape), rate)
    gap = [0.0 if r is None or m is None else r - m for r, m in zip(reference.bands_db, made, strict=True)]
    for amount in (0.5, 1.0):
        eq = {
            f"eq_{int(hz)}": round(float(np.clip(amount * g, -12.0, 12.0)), 2)
            for hz, g in zip(EQ_HZ, gap, strict=True)
        }
        candidate = dataclasses.replace(shape, **eq)
        similarity = cosine(encoder.embed(render(tune_text, candidate), rate), reference.embedding)
        tried += 1
        if similarity > best:
            shape, best = candidate, similarity
    similarity = cosine(encoder.embed(render(check_text, shape), rate), reference.embedding)
    base = cosine(encoder.embed(render(check_text, Shape()), rate), reference.embedding)
    return Fit(shape, similarity, base, tried, time.perf_counter() - started)


def enrol(
    tts: VoicedTts,
    voice_id: str,
    name: str,
    audio: F32,
    sample_rate: int,
    *,
    base: str = "heart",
    limits: Limits = Limits(),
    encoder: SpeakerEncoder | None = None,
    consent: str = "",
) -> tuple[Voice, Fit]:
    """Fit a voice derived from ``base`` to the reference audio and add it to the library. ``consent``
    (the enroller's statement or a consent recording's id) is kept in the record.
    VoiceError: a taken or malformed id (409/422), a base voice that cannot be shaped, bad reference
    audio (422, the reason in the message). Blocking (seconds): call from a worker thread."""
    check_id(voice_id)
    if tts.library.exists(voice_id):
        raise VoiceError(f"voice {voice_id!r} already exists", code="voice_exists", status=409)
    base_voice = tts.library.get(base)
    engine = tts.engine(base_voice)
    if not isinstance(engine, HibariEngine) or base_voice.params:
        raise VoiceError(
            f"voice {base!r} cannot be adapted: enrolment shapes hibari's own voice", code="bad_voice"
        )
    encoder = encoder or shared_encoder()
    reference = analyse(audio, sample_rate, encoder, limits)

    def render(text: str, shape: Shape) -> F32:
        chunks = engine.render(text, shape.params(), TtsOptions(), lambda: False)
        return np.concatenate([c.audio for c in chunks])

    result = fit(reference, render, engine.sample_rate, engine.f0(TUNE_TEXT), encoder)
    embedding = encoder.embed(render(CHECK_TEXT, result.shape), engine.sample_rate)
    voice = Voice(
        voice_id,
        name.strip() or voice_id,
        base_voice.engine,
        base_voice.model,
        result.shape.params(),
        language=base_voice.language,
        licence=f"{base_voice.licence}; parameters fitted to the enroller's reference audio",
        consent=consent[:500],
        description=f"derived from {base} to sound like {reference.speech_s:.0f} s of reference speech "
        "(parametric adaptation: pitch, formants, tilt, equaliser)",
        reference={
            "speech_s": round(reference.speech_s, 1),
            "f0_median_hz": round(reference.f0_median_hz, 1),
            "consistency": round(reference.consistency, 3),
            "similarity": round(result.similarity, 3),
            "base_similarity": round(result.base_similarity, 3),
            "fit_s": round(result.elapsed_s, 2),
        },
    )
    added = tts.library.add(voice, embedding)
    log.info(
        "enrolled %r: similarity to the reference %.2f (base voice %.2f), %d candidates in %.1f s",
        voice_id,
        result.similarity,
        result.base_similarity,
        result.candidates,
        result.elapsed_s,
    )
    return added, result
