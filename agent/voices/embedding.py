"""Speaker embeddings: 256-dim d-vectors from resemblyzer's pretrained speaker encoder (Apache-2.0).

The weights (``resemblyzer/pretrained.pt``, a 3-layer LSTM over 40 mel bands and a 256x256 projection,
trained with the generalised end-to-end loss) ship in the ``resemblyzer`` wheel. voxloop reads that file
and never imports ``resemblyzer``, whose audio module needs librosa: the network is this module's own
``nn.Module`` and the features are computed here (torch's STFT, a Slaney mel filter bank from
transformers' ``audio_utils``).

The recipe follows the model's training (resemblyzer's hparams): 16 kHz audio, loudness raised to
-30 dBFS, long pauses cut (webrtcvad), a 25 ms / 10 ms power mel spectrogram (not log), windows of
160 frames (1.6 s) taken 1.3 times a second, each embedded, the mean L2-normalised. Cosine similarity
of two embeddings: ~0.9 for one speaker, ~0.5-0.75 for two (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt
import soxr
import torch
import webrtcvad
from torch import nn
from transformers.audio_utils import mel_filter_bank

from agent import models

RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s windows
PARTIALS_PER_S = 1.3
MIN_COVERAGE = 0.75  # the last window is kept if at least this much of it is audio
TARGET_DBFS = -30.0
DIM = 256

Embedding = npt.NDArray[np.float32]

# What a voice says to be embedded when it has no reference audio (a built-in voice): ~10 s of speech.
SAMPLE_TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish."
)


class SpeakerNet(nn.Module):
    """Mel frames (batch, frames, 40) -> L2-normalised embeddings (batch, 256): the last layer's
    final hidden state, projected, rectified."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, DIM)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        out: torch.Tensor = raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return out


class SpeakerEncoder:
    """Loaded once per process and shared; ``embed`` is thread-safe (one call at a time)."""

    name = "resemblyzer-ge2e"

    def __init__(self, weights: str) -> None:
        state = torch.load(weights, map_location="cpu", weights_only=True)["model_state"]
        self._net = SpeakerNet()
        # The checkpoint also holds the training loss's similarity scale and bias: not used here.
        self._net.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})
        self._net.eval()
        self._mel = torch.from_numpy(
            mel_filter_bank(
                num_frequency_bins=N_FFT // 2 + 1,
                num_mel_filters=N_MELS,
                min_frequency=0.0,
                max_frequency=RATE / 2,
                sampling_rate=RATE,
                norm="slaney",
                mel_scale="slaney",
            ).astype(np.float32)
        )  # (201, 40)
        self._window = torch.hann_window(N_FFT, periodic=True)
        self._lock = threading.Lock()

    def embed(self, audio: npt.NDArray[np.floating], sample_rate: int) -> Embedding:
        """One utterance (mono float in [-1, 1]) -> its L2-normalised embedding. ValueError for audio
        with no speech in it. Blocking: call from a worker thread."""
        partials = self.embed_partials(audio, sample_rate)
        mean = partials.mean(axis=0)
        out: Embedding = np.asarray(mean / max(float(np.linalg.norm(mean)), 1e-12), np.float32)
        return out

    def embed_partials(self, audio: npt.NDArray[np.floating], sample_rate: int) -> npt.NDArray[np.float32]:
        """The embedding of each 1.6 s window (n, 256): how much they spread says whether one
        speaker talks throughout."""
        wav = prepare(audio, sample_rate)
        if len(wav) == 0:
            raise ValueError("no speech in the audio")
        starts = partial_starts(len(wav))
        end = (starts[-1] + PARTIAL_FRAMES) * HOP
        wav = np.pad(wav, (0, max(0, end - len(wav))))
        with self._lock, torch.inference_mode():
            mel = self.mel_frames(torch.from_numpy(wav))
            batch = torch.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])
            out: npt.NDArray[np.float32] = self._net(batch).numpy()
        return out

    def mel_frames(self, wav: torch.Tensor) -> torch.Tensor:
        """(frames, 40) power mel spectrogram, 25 ms Hann windows every 10 ms, centred (zero padded)."""
        spec = torch.stft(
            wav, N_FFT, HOP, window=self._window, center=True, pad_mode="constant", return_complex=True
        )
        power = spec.real.square() + spec.imag.square()  # (201, frames)
        return (power.T @ self._mel).contiguous()


def partial_starts(n_samples: int) -> list[int]:
    """First frame of each 1.6 s window over ``n_samples`` of 16 kHz audio (at least one)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(round(RATE / PARTIALS_PER_S / HOP))
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    if len(starts) > 1:
        covered = (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
        if covered < MIN_COVERAGE:
            starts.pop()
    return starts


def prepare(audio: npt.NDArray[np.floating], sample_rate: int) -> npt.NDArray[np.float32]:
    """16 kHz, quiet audio raised to -30 dBFS (never lowered), pauses longer than ~0.2 s cut."""
    wav = np.asarray(audio, np.float32)
    if sample_rate != RATE:
        wav = soxr.resample(wav, sample_rate, RATE).astype(np.float32)
    rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))) if len(wav) else 0.0
    if rms <= 1e-6:
        return np.zeros(0, np.float32)
    gain_db = TARGET_DBFS - 20.0 * np.log10(rms)
    if gain_db > 0:
        wav = wav * np.float32(10.0 ** (gain_db / 20.0))
    return keep_speech(wav)


VAD_FRAME = 480  # 30 ms at 16 kHz
_SMOOTH = 8  # frames in the moving average of the VAD's votes
_BRIDGE = 6  # a pause of up to this many frames around speech is kept


def keep_speech(wav: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The audio with its long pauses removed (webrtcvad, most aggressive mode, smoothed)."""
    n = len(wav) // VAD_FRAME
    if n == 0:
        return wav
    pcm = (np.clip(wav[: n * VAD_FRAME], -1.0, 1.0) * 32767.0).astype("<i2")
    vad = webrtcvad.Vad(3)
    votes = np.array(
        [vad.is_speech(pcm[i * VAD_FRAME : (i + 1) * VAD_FRAME].tobytes(), RATE) for i in range(n)], float
    )
    smooth = np.convolve(votes, np.ones(_SMOOTH) / _SMOOTH, mode="same") > 0.5
    keep = np.convolve(smooth.astype(float), np.ones(2 * _BRIDGE + 1), mode="same") > 0
    if not keep.any():
        return np.zeros(0, np.float32)
    return np.asarray(wav[: n * VAD_FRAME].reshape(n, VAD_FRAME)[keep].reshape(-1), np.float32)


def cosine(a: Embedding, b: Embedding) -> float:
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


_shared: SpeakerEncoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> SpeakerEncoder:
    """The process's one encoder, loaded (and its weights' sha256 checked) on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SpeakerEncoder(str(models.prepare(models.CATALOGUE["resemblyzer-ge2e"])))
        return _shared
