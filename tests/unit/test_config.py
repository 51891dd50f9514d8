from __future__ import annotations

import pytest

from agent.config import Settings
from agent.errors import ConfigError


def test_env_then_flags() -> None:
    env = {"VOXLOOP_PORT": "9000", "VOXLOOP_ENDPOINT_SILENCE_S": "0.4", "VOXLOOP_ASR_MODEL": "base"}
    s = Settings.from_env(env, port=9100, host=None)
    assert (s.port, s.endpoint_silence_s, s.asr_model, s.host) == (9100, 0.4, "base", "127.0.0.1")


@pytest.mark.parametrize(
    "env",
    [
        {"VOXLOOP_PORT": "eighty"},
        {"VOXLOOP_PORT": "70000"},
        {"VOXLOOP_VAD_RELEASE_THRESHOLD": "0.9"},
        {"VOXLOOP_WEBRTCVAD_MODE": "7"},
        {"VOXLOOP_MAX_UTTERANCE_S": "0.5"},
    ],
)
def test_bad_values_are_reported(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_defaults_listen_on_loopback_only() -> None:
    assert Settings.from_env({}).host == "127.0.0.1"
