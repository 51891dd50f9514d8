"""A voice's shape: how a derived voice reshapes hibari's model output before the vocoder.

hibari's acoustic model predicts, per 12.5 ms frame, log-magnitude envelopes of a harmonic and a noise
part (``lh``, ``ln``; 601 bins up to 12 kHz), a free-phase part (``lr``, ``phi``), a phase parameter
(``th``) and f0; a DSP vocoder turns them into a waveform (hibari/dsp.py). A shape edits them:

- ``f0_scale`` multiplies the pitch, ``f0_range`` widens (>1) or flattens (<1) its movement around the
  sentence's mean (in log-frequency);
- ``warp`` stretches the frequency axis of every envelope: < 1 moves the formants down (a longer
  vocal tract, a bigger speaker), > 1 up;
- ``tilt_db`` adds that many dB per octave around 1 kHz (negative: darker, breathier top);
- ``speed`` multiplies the speaking rate;
- ``eq_250`` .. ``eq_8000`` are gains in dB at octave centres (interpolated in log-frequency between
  them, flat beyond), an equaliser toward a reference's long-term spectrum.

This is parametric adaptation of one voice, not neural voice cloning: it moves hibari's voice toward a
reference speaker (pitch, vocal-tract length, spectral balance), it cannot copy one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from agent.errors import ModelError

F32 = npt.NDArray[np.float32]

N_BINS = 601  # hibari: n_fft 1200 at 24 kHz, 20 Hz per bin
BIN_HZ = 20.0
VOICED_HZ = 40.0  # hibari's vocoder treats f0 below this as unvoiced
_NEPER_PER_DB = np.log(10.0) / 20.0


@dataclass(frozen=True, slots=True)
class Shape:
    f0_scale: float = 1.0
    f0_range: float = 1.0
    warp: float = 1.0
    tilt_db: float = 0.0
    speed: float = 1.0
    eq_250: float = 0.0
    eq_500: float = 0.0
    eq_1000: float = 0.0
    eq_2000: float = 0.0
    eq_4000: float = 0.0
    eq_8000: float = 0.0

    LIMITS = {  # noqa: RUF012 - a class constant, not a field
        "f0_scale": (0.4, 2.0),
        "f0_range": (0.0, 2.5),
        "warp": (0.7, 1.35),
        "tilt_db": (-8.0, 8.0),
        "speed": (0.5, 2.0),
        **{f"eq_{hz}": (-12.0, 12.0) for hz in (250, 500, 1000, 2000, 4000, 8000)},
    }

    def __post_init__(self) -> None:
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if not (low <= value <= high):
                raise ModelError(
                    f"voice parameter {name}={value} is outside [{low}, {high}]", code="bad_voice"
                )

    @classmethod
    def of(cls, params: Mapping[str, float | str]) -> Shape:
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise ModelError(
                f"unknown hibari voice parameters {sorted(unknown)}; known: {sorted(known)}", code="bad_voice"
            )
        try:
            return cls(**{k: float(v) for k, v in params.items()})
        except ValueError as e:
            raise ModelError(f"hibari voice parameters must be numbers: {e}", code="bad_voice") from e

    def params(self) -> dict[str, float]:
        """Only what differs from the base voice, rounded: what a voice record stores."""
        base = Shape()
        return {
            f.name: round(float(getattr(self, f.name)), 4)
            for f in fields(self)
            if getattr(self, f.name) != getattr(base, f.name)
        }

    @property
    def eq_db(self) -> tuple[float, ...]:
        return (self.eq_250, self.eq_500, self.eq_1000, self.eq_2000, self.eq_4000, self.eq_8000)

    @property
    def neutral(self) -> bool:
        return self == Shape()

    def apply(
        self, lh: F32, th: F32, ln: F32, lr: F32, phi: F32, f0: F32
    ) -> tuple[F32, F32, F32, F32, F32, F32]:
        """Reshaped model outputs (each envelope [601, frames], f0 [frames]); inputs are not modified."""
        if self.warp != 1.0:
            lh, th, ln, lr, phi = (warp_bins(x, self.warp) for x in (lh, th, ln, lr, phi))
        gains = self.eq_db
        if self.tilt_db != 0.0 or any(gains):
            offset = (tilt_curve(self.tilt_db) + eq_curve(gains))[:, None]
            lh, ln, lr = lh + offset, ln + offset, lr + offset
        if self.f0_scale != 1.0 or self.f0_range != 1.0:
            f0 = reshape_f0(f0, self.f0_scale, self.f0_range)
        return lh, th, ln, lr, phi, f0


def warp_bins(x: F32, alpha: float) -> F32:
    """Envelope ``x`` [bins, frames] with its frequency axis stretched by ``alpha``: the value at
    frequency f moves to alpha * f (linear interpolation; above the top bin, the top bin's value)."""
    n = x.shape[0]
    src = np.arange(n, dtype=np.float32) / np.float32(alpha)
    lo = np.clip(np.floor(src).astype(np.int64), 0, n - 1)
    hi = np.minimum(lo + 1, n - 1)
    frac = np.clip(src - lo, 0.0, 1.0).astype(np.float32)[:, None]
    return np.asarray(x[lo] * (1.0 - frac) + x[hi] * frac, np.float32)


def tilt_curve(db_per_octave: float) -> F32:
    """Log-magnitude offset per bin for a tilt of ``db_per_octave`` around 1 kHz (flat below 125 Hz)."""
    hz = np.maximum(np.arange(N_BINS, dtype=np.float32) * BIN_HZ, 125.0)
    return np.asarray(db_per_octave * _NEPER_PER_DB * np.log2(hz / 1000.0), np.float32)


EQ_HZ = (250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)


def eq_curve(gains_db: tuple[float, ...]) -> F32:
    """Log-magnitude offset per bin for gains (dB) at ``EQ_HZ``, linear in log-frequency between them."""
    hz = np.maximum(np.arange(N_BINS, dtype=np.float64) * BIN_HZ, 1.0)
    db = np.interp(np.log2(hz), np.log2(EQ_HZ), gains_db)
    return np.asarray(db * _NEPER_PER_DB, np.float32)


def reshape_f0(f0: F32, scale: float, spread: float) -> F32:
    """Voiced frames scaled by ``scale``, their log-distance from the voiced mean times ``spread``."""
    out = np.array(f0, np.float32, copy=True)
    voiced = out > VOICED_HZ
    if not voiced.any():
        return out
    log_f0 = np.log(out[voiced])
    mean = float(log_f0.mean())
    out[voiced] = np.exp(mean + spread * (log_f0 - mean)) * scale
    # a frame pushed under the vocoder's voicing threshold would turn to noise: keep it voiced
    out[voiced] = np.maximum(out[voiced], VOICED_HZ + 1.0)
    return out
