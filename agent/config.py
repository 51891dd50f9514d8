"""Settings: one frozen dataclass, read from ``VOXLOOP_*`` environment variables and CLI flags.

Every field has a help text; ``voxloop serve --help`` lists them all, with their environment variable
(the field name upper-cased, prefixed ``VOXLOOP_``). CLI flags override the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import ConfigError

DEFAULT_SYSTEM_PROMPT = (
    "You are voxloop, a friendly voice assistant talking with a person out loud. "
    "Answer in one or two short spoken sentences. Use plain words: no lists, no code, no markdown, "
    "no emoji. If you did not understand, say so briefly."
)


# Named turn-taking profiles: what each changes from the configured policy. "conversation" is the
# policy as configured; "tutoring" lets a learner think aloud (long pauses are not the end of a turn,
# and the tutor is not stopped by a short remark); "phone" expects line noise and echo (harder to
# interrupt, more patient with pauses) and is the telephony default.
PROFILES: dict[str, dict[str, float]] = {
    "conversation": {},
    "tutoring": {
        "endpoint_silence_s": 1.6,
        "endpoint_complete_s": 1.2,
        "endpoint_incomplete_s": 2.5,
        "barge_in_min_speech_s": 0.15,
        "barge_in_confirm_s": 1.0,
        "false_interruption_timeout_s": 1.2,
    },
    "phone": {
        "threshold": 0.6,
        "endpoint_silence_s": 0.8,
        "endpoint_complete_s": 0.6,
        "endpoint_incomplete_s": 1.2,
        "barge_in_min_speech_s": 0.2,
        "barge_in_confirm_s": 0.9,
        "false_interruption_timeout_s": 1.2,
    },
}


@dataclass(frozen=True, slots=True)
class TurnPolicy:
    """Thresholds, in the units the machine counts (probability, seconds)."""

    threshold: float = 0.5
    release_threshold: float = 0.35
    min_speech_s: float = 0.12
    endpoint_silence_s: float = 0.7  # while the pause's transcript is not known yet
    endpoint_complete_s: float = 0.5  # the transcript is a finished sentence
    endpoint_incomplete_s: float = 1.0  # the transcript dangles
    max_utterance_s: float = 30.0
    barge_in_min_speech_s: float = 0.1  # speech over the agent this long pauses it
    barge_in_confirm_s: float = 0.7  # ... this long is an interruption whatever was said
    false_interruption_timeout_s: float = 1.0  # no words this long after the overlap: the agent resumes
    max_backchannel_s: float = 1.2  # a backchannel is shorter than this
    backchannels: frozenset[str] = frozenset(
        {"uh-huh", "uh huh", "mm-hmm", "mm hmm", "mhm", "mm", "hmm", "yeah", "yes", "yep", "right", "okay",
         "ok", "sure", "i see", "got it", "uh", "um", "ah", "oh", "wow", "cool", "nice", "alright", "true"}
    )  # fmt: skip


def with_profile(policy: TurnPolicy, profile: str) -> TurnPolicy:
    """``policy`` with the named profile's changes applied."""
    changes: dict[str, Any] = PROFILES[profile]
    return dataclasses.replace(policy, **changes)


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class Settings:
    # -- server ------------------------------------------------------------------------------------
    host: str = _f("127.0.0.1", "address to listen on")
    port: int = _f(8000, "TCP port (0 picks a free one; the chosen port is logged)")
    max_message_bytes: int = _f(1 << 20, "largest WebSocket message accepted; larger closes with 1009")
    outbound_high_water_bytes: int = _f(
        256 << 10,
        "bytes queued for one client above which its audio is dropped (it is not reading in real time)",
    )
    # -- models ------------------------------------------------------------------------------------
    vad_backend: str = _f("silero", "VAD backend (agent/engines.py: BACKENDS)")
    asr_backend: str = _f("faster-whisper", "ASR backend (agent/engines.py: BACKENDS)")
    llm_backend: str = _f("llama-cpp", "LLM backend (agent/engines.py: BACKENDS)")
    tts_backend: str = _f("hibari", "TTS backend (agent/engines.py: BACKENDS)")
    asr_max_batch: int = _f(1, "most ASR requests run as one batch (1 on a CPU: a batch only adds waiting)")
    batch_window_s: float = _f(
        0.0, "how long a model queue waits for more requests after the first (0: never; GPU batching)"
    )
    asr_model: str = _f(
        "tiny.en",
        "ASR: 'tiny.en' or 'base' (embedded), a faster-whisper model folder, or a model name "
        "(needs a network the first time)",
    )
    asr_compute_type: str = _f("int8", "CTranslate2 compute type for the ASR model")
    asr_device: str = _f("cpu", "'cpu' or 'cuda'")
    asr_threads: int = _f(2, "CPU threads for the ASR model")
    asr_beam_size: int = _f(1, "beam size for the final transcript (1 = greedy, fastest)")
    asr_language: str = _f("en", "spoken language code, or '' to detect it (multilingual models)")
    asr_min_window_s: float = _f(
        10.0,
        "shortest Whisper window for short utterances (speed; see agent/asr/faster_whisper.py); 0 = 30 s",
    )
    llm_model: str = _f(
        "qwen", "LLM: 'qwen' (Qwen2.5-Coder-0.5B Q4_K_M, embedded), 'smollm2' (tiny, embedded) or a GGUF path"
    )
    llm_threads: int = _f(2, "CPU threads for llama.cpp")
    llm_context_tokens: int = _f(2048, "llama.cpp context window (n_ctx)")
    llm_gpu_layers: int = _f(0, "layers offloaded to a GPU by llama.cpp (-1 = all)")
    llm_state_cache_mb: int = _f(
        256, "RAM for llama.cpp KV states, reused by the longest common prefix (per-session history); 0 = off"
    )
    max_reply_tokens: int = _f(120, "most tokens the LLM may produce for one reply")
    temperature: float = _f(0.5, "LLM sampling temperature")
    system_prompt: str = _f(DEFAULT_SYSTEM_PROMPT, "the agent's persona and rules")
    memory_budget_tokens: int = _f(
        1200, "context memory budget: system prompt + kept turns; the oldest turns are dropped beyond it"
    )
    tts_voice: str = _f("heart", "TTS voice (hibari: 'heart' is embedded)")
    tts_speed: float = _f(1.0, "TTS speaking rate (0.5 slow .. 2.0 fast)")
    max_tts_chars: int = _f(1000, "longest text one 'say' or 'text' message may carry")
    # -- turn-taking -------------------------------------------------------------------------------
    turn_profile: str = _f(
        "conversation",
        "default turn-taking profile: conversation, tutoring or phone (PROFILES below)",
    )
    vad_threshold: float = _f(0.5, "Silero speech probability that counts as speech")
    vad_release_threshold: float = _f(0.35, "probability under which speech counts as ended (hysteresis)")
    webrtcvad_mode: int = _f(2, "webrtcvad aggressiveness 0-3 (the cheap gate in front of Silero); -1 = off")
    min_speech_s: float = _f(0.12, "speech shorter than this is noise, not the start of a turn")
    endpoint_silence_s: float = _f(
        0.7, "silence that ends the user's turn while the pause's transcript is not known yet"
    )
    endpoint_complete_s: float = _f(
        0.5, "silence that ends the turn once the transcript is a finished sentence"
    )
    endpoint_incomplete_s: float = _f(
        1.0, "silence that ends the turn when the transcript dangles ('and', a comma): the user may go on"
    )
    speculative_reply: bool = _f(
        True, "start the reply (LLM, TTS) when the pause's transcript is ready, hold it until the endpoint"
    )
    preroll_s: float = _f(0.25, "audio kept before detected speech start and given to ASR")
    max_utterance_s: float = _f(30.0, "longest user utterance; the turn is ended there and answered")
    partial_interval_s: float = _f(1.0, "seconds between partial transcripts while the user speaks (0 = off)")
    barge_in_min_speech_s: float = _f(0.1, "user speech over the agent this long pauses the agent's audio")
    barge_in_confirm_s: float = _f(
        0.7, "user speech over the agent this long interrupts it, whatever was said"
    )
    false_interruption_timeout_s: float = _f(
        1.0, "after speech over the agent, no words within this time: the agent resumes where it stopped"
    )
    backchannels: str = _f(
        "uh-huh,uh huh,mm-hmm,mm hmm,mhm,mm,hmm,yeah,yes,yep,right,okay,ok,sure,i see,got it,uh,um,ah,oh,"
        "wow,cool,nice,alright,true",
        "comma-separated words and phrases that, said over the agent, do not interrupt it",
    )
    echo_gate: bool = _f(
        True, "gate speech onset by the agent's own recent audio, learning its echo (agent/echo.py)"
    )
    echo_max_delay_s: float = _f(
        0.45, "longest echo delay the echo gate allows for (playout lead + network + echo)"
    )
    # -- audio out ---------------------------------------------------------------------------------
    playout_lead_s: float = _f(0.06, "how far ahead of real time agent audio is sent to the client")
    input_queue_s: float = _f(2.0, "input audio buffered before the oldest is dropped (and counted)")
    # -- telephony ---------------------------------------------------------------------------------
    phone_profile: str = _f(
        "phone", "turn-taking profile of phone calls (a call's 'profile' parameter overrides)"
    )
    phone_greeting: str = _f(
        "", "what the agent says when a call connects (a call's 'greeting' parameter overrides)"
    )
    phone_stream_url: str = _f(
        "",
        "public wss:// URL of the media stream, put in the TwiML; empty: wss://<Host header>/twilio/media",
    )
    # -- WebRTC ------------------------------------------------------------------------------------
    webrtc_ice_servers: str = _f(
        "", "comma-separated STUN/TURN URLs for WebRTC peers; empty (the default) contacts no server"
    )
    webrtc_jitter_frames: int = _f(
        1, "20 ms Opus frames the inbound jitter buffer waits for (aiortc's default is 4; docs/webrtc.md)"
    )
    webrtc_loopback_candidates: bool = _f(
        True, "offer 127.0.0.1 as an ICE host candidate (aioice leaves it out; a same-host browser needs it)"
    )
    webrtc_playout_lead_s: float = _f(
        0.02, "how far ahead of real time agent audio is handed to the WebRTC track (its own clock paces)"
    )

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} out of range")
        if not 0.0 < self.vad_release_threshold <= self.vad_threshold < 1.0:
            raise ConfigError("need 0 < vad_release_threshold <= vad_threshold < 1")
        for name in ("endpoint_silence_s", "endpoint_complete_s", "endpoint_incomplete_s"):
            if getattr(self, name) < 0.05:
                raise ConfigError(f"{name} must be at least 0.05 s")
        if self.max_utterance_s <= 1:
            raise ConfigError("max_utterance_s must exceed 1 s")
        if self.phone_profile not in PROFILES:
            raise ConfigError(f"phone_profile {self.phone_profile!r}: use one of {', '.join(PROFILES)}")
        if self.turn_profile not in PROFILES:
            raise ConfigError(f"turn_profile {self.turn_profile!r}: use one of {', '.join(PROFILES)}")
        if self.webrtcvad_mode not in (-1, 0, 1, 2, 3):
            raise ConfigError("webrtcvad_mode must be -1 (off) or 0..3")
        if not 1 <= self.webrtc_jitter_frames <= 8:
            raise ConfigError("webrtc_jitter_frames must be 1..8")
        if self.batch_window_s < 0:
            raise ConfigError("batch_window_s must be >= 0")
        for name in ("asr_threads", "llm_threads", "max_reply_tokens", "max_tts_chars", "asr_max_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``VOXLOOP_*`` variables, then ``overrides`` (CLI flags; None means unset)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(env_name(f.name))
            if raw is not None:
                values[f.name] = parse_value(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except TypeError as e:
            raise ConfigError(str(e)) from e

    def describe(self) -> dict[str, Any]:
        """Settings as a plain dict (for logs and session.created), the system prompt shortened."""
        out = dataclasses.asdict(self)
        out["system_prompt"] = self.system_prompt[:80] + ("..." if len(self.system_prompt) > 80 else "")
        return out


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """What one conversation chooses for itself (process settings are the defaults). Arrives through
    the session's ``ConfigureIn`` input; a field left None keeps its current value."""

    profile: str | None = None  # turn-taking profile: one of PROFILES
    instructions: str | None = None  # the system prompt: persona and rules
    voice: str | None = None  # the TTS voice (None: the backend's default)
    greeting: str | None = None  # said as it is when the session starts (only in the first ConfigureIn)

    def __post_init__(self) -> None:
        if self.profile is not None and self.profile not in PROFILES:
            raise ConfigError(
                f"unknown profile {self.profile!r}; use one of {', '.join(PROFILES)}", code="unknown_profile"
            )


def env_name(field_name: str) -> str:
    return "VOXLOOP_" + field_name.upper()


def parse_value(f: dataclasses.Field[Any], raw: str) -> Any:
    kind: type[Any] = type(f.default)
    try:
        if kind is bool:
            word = raw.strip().lower()
            if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(raw)
            return word in ("1", "true", "yes", "on")
        return kind(raw)
    except ValueError as e:
        raise ConfigError(f"{env_name(f.name)}={raw!r}: expected {kind.__name__}") from e
