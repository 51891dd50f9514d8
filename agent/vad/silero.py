"""Silero VAD v6 (ONNX, from the faster-whisper wheel), streamed one 512-sample window at a time.

The ONNX session is loaded once and shared (onnxruntime's run() is thread-safe); each session's stream
keeps its own recurrent state (h, c) and the 64-sample context the model expects before each window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime

from agent import models
from agent.config import Settings
from agent.vad.base import VAD_WINDOW, VadFrame
from agent.vad.webrtc import WebRtcGate

CONTEXT_SAMPLES = 64


class SileroVad:
    name = "silero-vad-v6"

    def __init__(self, path: Path, webrtcvad_mode: int = 2) -> None:
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._webrtcvad_mode = webrtcvad_mode

    def stream(self) -> SileroStream:
        gate = WebRtcGate(self._webrtcvad_mode) if self._webrtcvad_mode >= 0 else None
        return SileroStream(self._session, gate)


class SileroStream:
    def __init__(self, session: onnxruntime.InferenceSession, gate: WebRtcGate | None) -> None:
        self._session = session
        self._gate = gate
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, np.float32)
        self._pending = np.zeros(0, np.int16)
        self._position = 0  # samples consumed into windows

    def process(self, pcm16k: npt.NDArray[np.int16]) -> list[VadFrame]:
        buf = np.concatenate([self._pending, pcm16k]) if len(self._pending) else pcm16k
        n = len(buf) // VAD_WINDOW
        frames: list[VadFrame] = []
        for i in range(n):
            window_i16 = buf[i * VAD_WINDOW : (i + 1) * VAD_WINDOW]
            window = window_i16.astype(np.float32) / 32768.0
            x = np.concatenate([self._context, window])[None, :]
            out, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
            self._context = window[-CONTEXT_SAMPLES:]
            self._position += VAD_WINDOW
            gate = self._gate.any_speech(window_i16) if self._gate is not None else True
            frames.append(VadFrame(self._position, float(np.asarray(out).reshape(-1)[0]), gate))
        self._pending = buf[n * VAD_WINDOW :].copy()
        return frames


def load(settings: Settings, progress: models.ProgressFactory | None = None) -> SileroVad:
    return SileroVad(models.prepare(models.CATALOGUE["silero-vad-v6"], progress), settings.vad.webrtcvad_mode)
