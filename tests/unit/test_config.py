from __future__ import annotations

import pytest

from agent.config import Settings, flat_fields
from agent.errors import ConfigError


def test_env_then_flags() -> None:
    env = {"VOXLOOP_PORT": "9000", "VOXLOOP_ENDPOINT_SILENCE_S": "0.4", "VOXLOOP_ASR_MODEL": "base"}
    s = Settings.from_env(env, port=9100, host=None)
    assert (s.server.port, s.turn.endpoint_silence_s, s.asr.model, s.server.host) == (
        9100,
        0.4,
        "base",
        "127.0.0.1",
    )


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
    assert Settings.from_env({}).server.host == "127.0.0.1"


def test_every_setting_has_one_flat_name_and_a_help_text() -> None:
    fields = flat_fields()
    assert len({f.name for f in fields}) == len(fields)
    assert all(f.field.metadata.get("help") for f in fields)
    s = Settings.of(asr_model="base", max_tts_chars=10, turn_profile="phone", webrtc_jitter_frames=2)
    assert (s.asr.model, s.tts.max_chars, s.turn.profile, s.webrtc.jitter_frames) == ("base", 10, "phone", 2)
    assert s.flat()["max_tts_chars"] == 10


def test_an_unknown_setting_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        Settings.of(asr_modle="base")
