"""The one exception tree. Every error a client can see carries a stable ``code``.

A client receives these as ``{"type": "error", "code": ..., "message": ..., "fatal": ...}`` events
(see docs/protocol.md). ``fatal`` errors end the session; the others leave it running.
"""

from __future__ import annotations


class VoxloopError(Exception):
    """Base of every error voxloop raises on purpose."""

    code = "internal_error"
    fatal = False

    def __init__(self, message: str, *, code: str | None = None, fatal: bool | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if fatal is not None:
            self.fatal = fatal

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class ConfigError(VoxloopError):
    """Bad settings: an unknown model name, a value out of range."""

    code = "bad_config"


class ModelError(VoxloopError):
    """An embedded model is missing or corrupt, or a model failed while running."""

    code = "model_error"


class ProtocolError(VoxloopError):
    """A client message that does not follow docs/protocol.md. The session goes on."""

    code = "bad_message"


class AudioFormatError(ProtocolError):
    """Audio that cannot be accepted: odd byte count, unsupported rate, oversized frame."""

    code = "bad_audio"


class LimitError(VoxloopError):
    """A configured limit was reached (utterance length, text length)."""

    code = "limit_exceeded"


class StageError(VoxloopError):
    """A model failed mid-turn (ASR, LLM, TTS). The turn ends; the session keeps listening."""

    code = "stage_failed"
