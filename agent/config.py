"""Settings, grouped by concern (server, vad, asr, llm, tts, turn, audio, phone, webrtc), read from
``VOXLOOP_*`` environment variables and CLI flags; and the per-session options a conversation chooses.

Every field has a help text and one flat name (``asr.model`` is ``--asr-model`` and
``VOXLOOP_ASR_MODEL``; ``turn.endpoint_silence_s`` is ``--endpoint-silence-s``); ``voxloop serve
--help`` lists them all. CLI flags override the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

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
    "tutoring": {  # learners think aloud: long pauses are not the end of a turn
        "endpoint_silence_s": 1.6,
        "endpoint_complete_s": 1.2,
        "endpoint_incomplete_s": 2.5,
        "endpoint_confident_s": 0.6,
        "endpoint_hold_s": 2.0,
        "eot_threshold": 0.7,
        "barge_in_min_speech_s": 0.15,
        "barge_in_confirm_s": 1.0,
        "false_interruption_timeout_s": 1.2,
    },
    "phone": {  # 8 kHz audio, line noise: the models hear less, so every bound is a little longer
        "threshold": 0.6,
        "endpoint_silence_s": 0.8,
        "endpoint_complete_s": 0.6,
        "endpoint_incomplete_s": 1.4,
        "endpoint_confident_s": 0.3,
        "endpoint_hold_s": 1.1,
        "eot_threshold": 0.6,
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
    endpoint_complete_s: float = 0.5  # the transcript is a finished sentence (no acoustic opinion)
    endpoint_incomplete_s: float = 1.3  # the transcript dangles
    endpoint_confident_s: float = 0.2  # transcript finished and the end-of-turn model agrees
    endpoint_hold_s: float = 1.0  # transcript finished but the end-of-turn model hears more coming
    eot_threshold: float = 0.5  # the end-of-turn model's P(complete) that counts as "complete"
    resume_min_speech_s: float = 0.064  # speech after the endpoint, the reply not heard yet: turn goes on
    max_utterance_s: float = 30.0
    # Speech that starts this soon after an onset too short to count (forgotten as noise) began with
    # it: an echo canceller or the echo gate can cut a user talking over the agent into pieces ("Wait,"
    # / "what is the" / "capital of Italy"), and what is transcribed must start at the first.
    onset_join_s: float = 0.6
    onset_join_min_s: float = 0.09  # ... if it held this much speech (a lone window is a click, an
    # echo), or was itself joined to one
    barge_in_min_speech_s: float = 0.1  # speech over the agent this long pauses it
    barge_in_confirm_s: float = 0.7  # ... this long is an interruption whatever was said
    false_interruption_timeout_s: float = 1.0  # no words this long after the overlap: the agent resumes
    max_backchannel_s: float = 1.2  # a backchannel is shorter than this
    wordless_logprob: float = -0.95  # an overlap the ASR hears with less confidence is not words
    wordless_max_words: int = 2  # ... if it heard this few different words ("Mama.", "ha ha ha")
    hum_tilt_db: float = -22.0  # an overlap with less high-frequency energy than this is a hum
    max_hum_s: float = 0.8  # ... if it is this short
    # While the agent's echo comes back, an overlap never this long louder than that echo is the echo,
    # whatever the ASR made of it (a user over a -6 dB echo: 80 ms and more; the echo: 0-40 ms).
    echo_overlap_louder_s: float = 0.06
    backchannels: frozenset[str] = frozenset(
        {"uh-huh", "uh huh", "mm-hmm", "mm hmm", "mhm", "mm", "hmm", "yeah", "yes", "yep", "right", "okay",
         "ok", "sure", "i see", "got it", "uh", "um", "ah", "oh", "wow", "cool", "nice", "alright", "true"}
    )  # fmt: skip
    interrupt_words: frozenset[str] = frozenset(
        {"wait", "stop", "hold on", "hang on", "sorry", "excuse me", "pardon", "actually", "listen", "hey"}
    )  # fmt: skip


def with_profile(policy: TurnPolicy, profile: str) -> TurnPolicy:
    """``policy`` with the named profile's changes applied."""
    changes: dict[str, Any] = PROFILES[profile]
    return dataclasses.replace(policy, **changes)


def _f(default: Any, help: str, *, flag: str | None = None) -> Any:
    """A settings field: its help text and, where it is not the group's prefix + the field's name,
    its flat name (the flag ``--NAME`` and the variable ``VOXLOOP_NAME``)."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True, slots=True)
class ServerSettings:
    PREFIX: ClassVar[str] = ""
    host: str = _f("127.0.0.1", "address to listen on")
    port: int = _f(8000, "TCP port (0 picks a free one; the chosen port is logged)")
    max_message_bytes: int = _f(1 << 20, "largest WebSocket message accepted; larger closes with 1009")
    outbound_high_water_bytes: int = _f(
        256 << 10,
        "bytes queued for one client above which its audio is dropped (it is not reading in real time)",
    )
    api_keys: str = _f(
        "", "comma-separated keys a Realtime API client sends as 'Authorization: Bearer KEY' (empty: none)"
    )

    def keys(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} out of range")


@dataclass(frozen=True, slots=True)
class VadSettings:
    PREFIX: ClassVar[str] = "vad_"
    backend: str = _f("silero", "VAD backend (agent/engines.py: BACKENDS)")
    threshold: float = _f(0.5, "Silero speech probability that counts as speech")
    release_threshold: float = _f(0.35, "probability under which speech counts as ended (hysteresis)")
    webrtcvad_mode: int = _f(
        2, "webrtcvad aggressiveness 0-3 (the cheap gate in front of Silero); -1 = off", flag="webrtcvad_mode"
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.release_threshold <= self.threshold < 1.0:
            raise ConfigError("need 0 < vad_release_threshold <= vad_threshold < 1")
        if self.webrtcvad_mode not in (-1, 0, 1, 2, 3):
            raise ConfigError("webrtcvad_mode must be -1 (off) or 0..3")


@dataclass(frozen=True, slots=True)
class AsrSettings:
    PREFIX: ClassVar[str] = "asr_"
    backend: str = _f("faster-whisper", "ASR backend (agent/engines.py: BACKENDS)")
    model: str = _f(
        "tiny.en",
        "ASR: 'tiny.en' or 'base' (embedded), a faster-whisper model folder, or a model name "
        "(needs a network the first time)",
    )
    compute_type: str = _f("int8", "CTranslate2 compute type for the ASR model")
    device: str = _f("cpu", "'cpu' or 'cuda'")
    threads: int = _f(2, "CPU threads for the ASR model")
    beam_size: int = _f(1, "beam size for the final transcript (1 = greedy, fastest)")
    language: str = _f("en", "spoken language code, or '' to detect it (multilingual models)")
    min_window_s: float = _f(
        10.0,
        "shortest Whisper window for short utterances (speed; see agent/asr/faster_whisper.py); 0 = 30 s",
    )
    max_batch: int = _f(1, "most ASR requests run as one batch (1 on a CPU: a batch only adds waiting)")
    batch_window_s: float = _f(
        0.0,
        "how long the ASR queue waits for more requests after the first (0: never; GPU batching)",
        flag="batch_window_s",
    )
    preroll_s: float = _f(0.25, "audio kept before detected speech start and given to ASR", flag="preroll_s")
    partial_interval_s: float = _f(
        1.0, "seconds between partial transcripts while the user speaks (0 = off)", flag="partial_interval_s"
    )

    def __post_init__(self) -> None:
        if self.threads < 1 or self.max_batch < 1:
            raise ConfigError("asr_threads and asr_max_batch must be >= 1")
        if self.batch_window_s < 0:
            raise ConfigError("batch_window_s must be >= 0")


@dataclass(frozen=True, slots=True)
class LlmSettings:
    PREFIX: ClassVar[str] = "llm_"
    backend: str = _f("llama-cpp", "LLM backend (agent/engines.py: BACKENDS)")
    model: str = _f(
        "qwen", "LLM: 'qwen' (Qwen2.5-Coder-0.5B Q4_K_M, embedded), 'smollm2' (tiny, embedded) or a GGUF path"
    )
    threads: int = _f(2, "CPU threads for llama.cpp")
    context_tokens: int = _f(2048, "llama.cpp context window (n_ctx)")
    gpu_layers: int = _f(0, "layers offloaded to a GPU by llama.cpp (-1 = all)")
    state_cache_mb: int = _f(
        256, "RAM for llama.cpp KV states, reused by the longest common prefix (per-session history); 0 = off"
    )
    max_reply_tokens: int = _f(120, "most tokens the LLM may produce for one reply", flag="max_reply_tokens")
    temperature: float = _f(0.5, "LLM sampling temperature", flag="temperature")
    repeat_penalty: float = _f(
        1.1,
        "LLM penalty on tokens it just used (1 = none): a first guard against loops",
        flag="repeat_penalty",
    )
    max_reply_sentences: int = _f(
        3,
        "sentences of an LLM reply that are spoken; the rest is left for the user to ask for",
        flag="max_reply_sentences",
    )
    max_reply_words: int = _f(
        60, "words of an LLM reply that are spoken (about 20 s)", flag="max_reply_words"
    )
    system_prompt: str = _f(DEFAULT_SYSTEM_PROMPT, "the agent's persona and rules", flag="system_prompt")
    memory_budget_tokens: int = _f(
        1200,
        "context memory budget: system prompt + kept turns; the oldest turns are dropped beyond it",
        flag="memory_budget_tokens",
    )
    prefill_partials: bool = _f(
        True,
        "read the user's words into the LLM's cache from partial transcripts while they speak, when "
        "the LLM is idle (the final prompt then reads only what changed)",
        flag="prefill_partials",
    )

    def __post_init__(self) -> None:
        if min(self.threads, self.max_reply_tokens, self.max_reply_sentences, self.max_reply_words) < 1:
            raise ConfigError(
                "llm_threads, max_reply_tokens, max_reply_sentences, max_reply_words must be >= 1"
            )
        if self.repeat_penalty < 1.0:
            raise ConfigError("repeat_penalty must be >= 1 (1 = off)")


@dataclass(frozen=True, slots=True)
class TtsSettings:
    PREFIX: ClassVar[str] = "tts_"
    voice: str = _f(
        "heart", "default TTS voice, an id from `voxloop voices list` (heart, ember, pip, basalt...)"
    )
    voices_dir: str = _f("", "where enrolled voices are stored (empty: VOXLOOP_HOME/voices)")
    gpt_sovits_url: str = _f(
        "", "base URL of a GPT-SoVITS api_v2 server for 'gpt-sovits' voices (empty: none)"
    )
    piper_runtime: str = _f(
        "onnx", "Piper voices run on 'onnx' (onnxruntime) or 'torch' (voxloop's VITS, word timings)"
    )
    speed: float = _f(1.0, "TTS speaking rate (0.5 slow .. 2.0 fast)")
    max_chars: int = _f(
        1000,
        "longest text one 'say' or 'text' message, or one speech request, may carry",
        flag="max_tts_chars",
    )
    max_speech_requests: int = _f(4, "POST /v1/audio/speech requests served at once (429 beyond)")
    max_reference_bytes: int = _f(
        20_000_000, "largest reference audio file POST /v1/voices takes (413 beyond)"
    )
    max_reference_s: float = _f(120.0, "longest reference audio enrolment takes, in seconds (422 beyond)")
    min_reference_s: float = _f(
        5.0, "least speech a reference must hold, in seconds (about a minute fits best)"
    )

    def __post_init__(self) -> None:
        if self.max_chars < 1 or self.max_speech_requests < 1 or self.max_reference_bytes < 1:
            raise ConfigError("max_tts_chars, tts_max_speech_requests, tts_max_reference_bytes must be >= 1")
        if self.piper_runtime not in ("onnx", "torch"):
            raise ConfigError("tts_piper_runtime must be 'onnx' or 'torch'")
        if not 0 < self.min_reference_s < self.max_reference_s:
            raise ConfigError("need 0 < tts_min_reference_s < tts_max_reference_s")


@dataclass(frozen=True, slots=True)
class TurnSettings:
    PREFIX: ClassVar[str] = ""
    profile: str = _f(
        "conversation",
        "default turn-taking profile: conversation, tutoring or phone (PROFILES above)",
        flag="turn_profile",
    )
    min_speech_s: float = _f(0.12, "speech shorter than this is noise, not the start of a turn")
    endpoint_silence_s: float = _f(
        0.7, "silence that ends the user's turn while the pause's transcript is not known yet"
    )
    endpoint_complete_s: float = _f(
        0.5, "silence that ends the turn once the transcript is a finished sentence"
    )
    endpoint_incomplete_s: float = _f(
        1.3,
        "silence that ends the turn when the transcript dangles ('and', a comma, digits being read out)",
    )
    endpoint_confident_s: float = _f(
        0.2, "silence that ends the turn when the transcript is finished and the end-of-turn model agrees"
    )
    endpoint_hold_s: float = _f(
        1.0, "silence that ends the turn when the transcript is finished but the end-of-turn model is not"
    )
    speculative_reply: bool = _f(
        True, "start the reply (LLM, TTS) when the pause's transcript is ready, hold it until the endpoint"
    )
    max_utterance_s: float = _f(30.0, "longest user utterance; the turn is ended there and answered")
    barge_in_min_speech_s: float = _f(0.1, "user speech over the agent this long pauses the agent's audio")
    barge_in_confirm_s: float = _f(
        0.7, "user speech over the agent this long interrupts it, whatever was said"
    )
    false_interruption_timeout_s: float = _f(
        1.0, "after speech over the agent, no words within this time: the agent resumes where it stopped"
    )
    wordless_logprob: float = _f(
        -0.95,
        "speech over the agent that the ASR hears with a mean token log-probability under this is "
        "wordless ('mm-hmm', 'uh-huh', a laugh): short, it does not interrupt",
    )
    backchannels: str = _f(
        "uh-huh,uh huh,mm-hmm,mm hmm,mhm,mm,hmm,yeah,yes,yep,right,okay,ok,sure,i see,got it,uh,um,ah,oh,"
        "wow,cool,nice,alright,true",
        "comma-separated words and phrases that, said over the agent, do not interrupt it",
    )
    interrupt_words: str = _f(
        "wait,stop,hold on,hang on,sorry,excuse me,pardon,actually,listen,hey",
        "comma-separated words and phrases that, heard over the agent, interrupt it even when the ASR "
        "is unsure of them (a short 'Wait.' on a phone line scores like a wordless 'mm-hmm')",
    )
    echo_gate: bool = _f(
        True, "gate speech onset by the agent's own recent audio, learning its echo (agent/echo.py)"
    )
    echo_max_delay_s: float = _f(
        0.45, "longest echo delay the echo gate allows for (playout lead + network + echo)"
    )

    def __post_init__(self) -> None:
        for name in (
            "endpoint_silence_s",
            "endpoint_complete_s",
            "endpoint_incomplete_s",
            "endpoint_confident_s",
            "endpoint_hold_s",
        ):
            if getattr(self, name) < 0.05:
                raise ConfigError(f"{name} must be at least 0.05 s")
        if self.max_utterance_s <= 1:
            raise ConfigError("max_utterance_s must exceed 1 s")
        if self.profile not in PROFILES:
            raise ConfigError(f"turn_profile {self.profile!r}: use one of {', '.join(PROFILES)}")


@dataclass(frozen=True, slots=True)
class EotSettings:
    PREFIX: ClassVar[str] = "eot_"
    backend: str = _f(
        "smart-turn", "end-of-turn model (agent/engines.py: BACKENDS): smart-turn, or off (transcript only)"
    )
    threshold: float = _f(0.5, "the end-of-turn model's P(complete) that counts as a finished turn")
    threads: int = _f(1, "CPU threads of the end-of-turn model")
    nice: int = _f(
        10,
        "how much lower than the ASR and LLM the model's thread runs (0-19): on a busy CPU its opinion "
        "comes late (the transcript decides alone) rather than slowing the final ASR pass; on an idle "
        "core it makes no difference",
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError("eot_threshold must be in (0, 1)")
        if self.threads < 1:
            raise ConfigError("eot_threads must be at least 1")
        if not 0 <= self.nice <= 19:
            raise ConfigError("eot_nice must be 0..19")


@dataclass(frozen=True, slots=True)
class AudioSettings:
    PREFIX: ClassVar[str] = ""
    playout_lead_s: float = _f(0.06, "how far ahead of real time agent audio is sent to the client")
    input_queue_s: float = _f(2.0, "input audio buffered before the oldest is dropped (and counted)")
    aec: str = _f(
        "webrtc",
        "server-side echo cancellation of the input (agent/aec.py): webrtc (AEC3) or off; a client that "
        "cancels its own echo (echo_cancelled in session.update: the page does) gets none",
    )

    def __post_init__(self) -> None:
        if self.aec not in ("webrtc", "off"):
            raise ConfigError(f"aec {self.aec!r}: use webrtc or off")


@dataclass(frozen=True, slots=True)
class PhoneSettings:
    PREFIX: ClassVar[str] = "phone_"
    profile: str = _f("phone", "turn-taking profile of phone calls (a call's 'profile' parameter overrides)")
    greeting: str = _f(
        "", "what the agent says when a call connects (a call's 'greeting' parameter overrides)"
    )
    stream_url: str = _f(
        "",
        "public wss:// URL of the media stream, put in the TwiML; empty: wss://<Host header>/twilio/media",
    )

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(f"phone_profile {self.profile!r}: use one of {', '.join(PROFILES)}")


@dataclass(frozen=True, slots=True)
class WebRtcSettings:
    PREFIX: ClassVar[str] = "webrtc_"
    ice_servers: str = _f(
        "", "comma-separated STUN/TURN URLs for WebRTC peers; empty (the default) contacts no server"
    )
    jitter_frames: int = _f(
        1, "20 ms Opus frames the inbound jitter buffer waits for (aiortc's default is 4; docs/webrtc.md)"
    )
    loopback_candidates: bool = _f(
        True, "offer 127.0.0.1 as an ICE host candidate (aioice leaves it out; a same-host browser needs it)"
    )
    playout_lead_s: float = _f(
        0.02, "how far ahead of real time agent audio is handed to the WebRTC track (its own clock paces)"
    )

    def __post_init__(self) -> None:
        if not 1 <= self.jitter_frames <= 8:
            raise ConfigError("webrtc_jitter_frames must be 1..8")


@dataclass(frozen=True, slots=True)
class FlatField:
    """One setting as the command line and the environment name it: ``--NAME``, ``VOXLOOP_NAME``."""

    name: str
    group: str  # the Settings attribute holding it
    field: dataclasses.Field[Any]

    @property
    def env(self) -> str:
        return env_name(self.name)


@dataclass(frozen=True, slots=True)
class Settings:
    """Process settings, grouped by concern; every field is a flag and a ``VOXLOOP_*`` variable
    (``flat_fields``). What one conversation chooses for itself is ``SessionOptions``."""

    server: ServerSettings = field(default_factory=ServerSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    asr: AsrSettings = field(default_factory=AsrSettings)
    llm: LlmSettings = field(default_factory=LlmSettings)
    tts: TtsSettings = field(default_factory=TtsSettings)
    turn: TurnSettings = field(default_factory=TurnSettings)
    eot: EotSettings = field(default_factory=EotSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    phone: PhoneSettings = field(default_factory=PhoneSettings)
    webrtc: WebRtcSettings = field(default_factory=WebRtcSettings)

    @classmethod
    def of(cls, **flat: Any) -> Settings:
        """Settings from flat names (``endpoint_silence_s=0.4``, ``asr_model="base"``); the rest default."""
        by_name = {f.name: f for f in flat_fields()}
        groups: dict[str, dict[str, Any]] = {g.name: {} for g in _GROUPS}
        for name, value in flat.items():
            if name not in by_name:
                raise ConfigError(f"unknown setting {name!r}")
            groups[by_name[name].group][by_name[name].field.name] = value
        try:
            built = {g.name: g.type_class(**groups[g.name]) for g in _GROUPS}
        except TypeError as e:
            raise ConfigError(str(e)) from e
        return cls(**built)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``VOXLOOP_*`` variables, then ``overrides`` (CLI flags; None means unset)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in flat_fields():
            raw = env.get(f.env)
            if raw is not None:
                values[f.name] = parse_value(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.of(**values)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name."""
        return {f.name: getattr(getattr(self, f.group), f.field.name) for f in flat_fields()}

    def describe(self) -> dict[str, Any]:
        """Settings as a plain nested dict (for logs), the system prompt shortened."""
        out = dataclasses.asdict(self)
        prompt = self.llm.system_prompt
        out["llm"]["system_prompt"] = prompt[:80] + ("..." if len(prompt) > 80 else "")
        return out


@dataclass(frozen=True, slots=True)
class _Group:
    name: str
    type_class: Any


_GROUPS = (
    _Group("server", ServerSettings),
    _Group("vad", VadSettings),
    _Group("asr", AsrSettings),
    _Group("llm", LlmSettings),
    _Group("tts", TtsSettings),
    _Group("turn", TurnSettings),
    _Group("eot", EotSettings),
    _Group("audio", AudioSettings),
    _Group("phone", PhoneSettings),
    _Group("webrtc", WebRtcSettings),
)


def flat_fields() -> list[FlatField]:
    """Every setting with its flat name, in the order ``voxloop serve --help`` lists them."""
    out = []
    for group in _GROUPS:
        for f in dataclasses.fields(group.type_class):
            out.append(FlatField(f.metadata.get("flag") or group.type_class.PREFIX + f.name, group.name, f))
    return out


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """What one conversation chooses for itself (process settings are the defaults). Arrives through
    the session's ``ConfigureIn`` input; a field left None keeps its current value."""

    profile: str | None = None  # turn-taking profile: one of PROFILES
    instructions: str | None = None  # the system prompt: persona and rules
    voice: str | None = None  # the TTS voice (None: the backend's default)
    greeting: str | None = None  # said as it is when the session starts (only in the first ConfigureIn)
    echo_cancelled: bool | None = None  # the client removes its own echo: no server-side AEC

    def __post_init__(self) -> None:
        if self.profile is not None and self.profile not in PROFILES:
            raise ConfigError(
                f"unknown profile {self.profile!r}; use one of {', '.join(PROFILES)}", code="unknown_profile"
            )


def env_name(flat_name: str) -> str:
    return "VOXLOOP_" + flat_name.upper()


def parse_value(f: FlatField, raw: str) -> Any:
    kind: type[Any] = type(f.field.default)
    try:
        if kind is bool:
            word = raw.strip().lower()
            if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(raw)
            return word in ("1", "true", "yes", "on")
        return kind(raw)
    except ValueError as e:
        raise ConfigError(f"{f.env}={raw!r}: expected {kind.__name__}") from e
