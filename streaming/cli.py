"""``voxloop``: serve, prepare models, speak a line, transcribe a file.

Every Settings field is a flag (``--endpoint-silence-s 0.4``) and an environment variable
(``VOXLOOP_ENDPOINT_SILENCE_S``); flags win.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import logging
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from agent import __version__, models
from agent.audio import float_to_pcm, pcm_to_float
from agent.config import FlatField, Settings, flat_fields, parse_value
from agent.errors import VoxloopError
from streaming.codecs import resample

log = logging.getLogger("voxloop")


class _Bar(models.Progress):
    def __init__(self, total: int, desc: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr, leave=True)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def _flag_value(f: FlatField, raw: str) -> Any:
    try:
        return parse_value(f, raw)
    except VoxloopError as e:
        raise argparse.ArgumentTypeError(e.message) from e


def _settings_parser() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("settings (each also an environment variable)")
    for f in flat_fields():
        help_text, default = f.field.metadata.get("help", ""), f.field.default
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=functools.partial(_flag_value, f),
            default=None,
            metavar=type(default).__name__.upper(),
            help=f"{help_text} [{f.env}; default: {default!r}]".replace("%", "%%"),
        )
    parent.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parent


PREVIEW_TEXT = "Hello! This is how I sound. I can read you the news, or help you plan your day."


def build_parser() -> argparse.ArgumentParser:
    from streaming.devtools.bench import TRANSPORTS

    settings = _settings_parser()
    parser = argparse.ArgumentParser(
        prog="voxloop",
        description="A real-time streaming voice agent, fully local. Models come from PyPI packages.",
    )
    parser.add_argument("--version", action="version", version=f"voxloop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "serve",
        parents=[settings],
        help="run the server (WebSocket sessions at /ws, health at /healthz)",
        description="Load the models once, then serve WebSocket voice sessions. Default 127.0.0.1:8000.",
    )
    m = sub.add_parser("models", parents=[settings], help="prepare, verify or list the embedded models")
    m.add_argument("action", choices=["prepare", "verify", "list"], nargs="?", default="list")
    say = sub.add_parser("say", parents=[settings], help="speak TEXT into a WAV file with the TTS model")
    say.add_argument("text")
    say.add_argument("-o", "--output", type=Path, required=True, help="WAV file to write")
    say.add_argument("--rate", type=int, default=0, help="sample rate of the WAV (default: the model's)")
    say.add_argument("--voice", help="a voice id (voxloop voices list); default: --tts-voice")
    v = sub.add_parser(
        "voices",
        parents=[settings],
        help="the speaker library: list, preview, enrol or remove voices",
        description="list: every voice with its engine and licence. preview ID -o F.wav: a short "
        "sample. enrol ID REF.wav [--name N]: fit a voice derived from heart to a reference recording "
        "(parametric adaptation, not cloning; about a minute of one speaker). remove ID: delete one.",
    )
    v.add_argument("action", choices=["list", "preview", "enrol", "remove"], nargs="?", default="list")
    v.add_argument("voice", nargs="?", help="the voice id (preview, enrol, remove)")
    v.add_argument("reference", nargs="?", type=Path, help="enrol: reference audio (WAV, mp3, flac...)")
    v.add_argument("--name", help="enrol: the display name (default: the id)")
    v.add_argument("--base", default="heart", help="enrol: the voice to adapt (default heart)")
    v.add_argument("-o", "--output", type=Path, help="preview: the WAV file to write")
    v.add_argument("--text", default=PREVIEW_TEXT, help="preview: what the voice says")
    tr = sub.add_parser("transcribe", parents=[settings], help="transcribe a WAV file with the ASR model")
    tr.add_argument("file", type=Path)
    b = sub.add_parser(
        "bench",
        parents=[settings],
        help="measure voice-to-voice latency (p50/p95/p99) over real-time spoken turns",
        description="Speak a fixed corpus to a server in real time and measure voice-to-voice latency at "
        "the client, as ../shared/LATENCY.md defines it. Without --url, starts its own server with the "
        "settings flags given here.",
    )
    b.add_argument("--url", help="a running server's WebSocket URL, e.g. ws://127.0.0.1:8000/ws")
    b.add_argument("--turns", type=int, default=20, help="measured turns (after one warm-up turn)")
    b.add_argument("--concurrency", type=int, default=1, help="clients talking at once, each its own session")
    b.add_argument("--transport", default="websocket", choices=sorted(TRANSPORTS), help="how clients connect")
    b.add_argument("--out", default="bench-out", help="folder for bench.json and bench.png")
    b.add_argument(
        "--corpus",
        default="default",
        choices=("default", "hesitation"),
        help="what the clients say: default (questions, 300-600 ms inner pauses) or hesitation "
        "(600-1000 ms pauses after 'and'/'because', in digits and letters, after a short sentence)",
    )
    b.add_argument(
        "--barge-in",
        action="store_true",
        help="measure barge-in instead (stop latency, false interruptions with echo, backchannels)",
    )
    b.add_argument(
        "--barge-in-modes",
        default="interrupt,echo,echo+interrupt,backchannel,nonlexical",
        help="--barge-in: what the client does in each agent turn, in turn (a comma list of those)",
    )
    b.add_argument(
        "--tts",
        action="store_true",
        help="measure the voices instead: speech API first byte, RTF, speaker similarity, round-trip WER",
    )
    b.add_argument("--extra-sessions", type=int, default=0, help="then hold N more sessions; RSS per session")
    b.add_argument(
        "--front",
        action="store_true",
        help="measure the front instead: server CPU per 20 ms frame in and out, ping round trip, pacing",
    )
    b.add_argument("--seconds", type=float, default=20.0, help="--front: seconds per phase")
    b.add_argument("--pid", type=int, default=0, help="--front with --url: the server's pid (for its CPU)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for chatty in ("aioice", "aiortc"):  # every ICE check at INFO; their warnings still show
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    overrides = {f.name: getattr(args, f.name) for f in flat_fields()}
    try:
        settings = Settings.from_env(**overrides)
        handler = {
            "serve": _serve,
            "models": _models,
            "say": _say,
            "voices": _voices,
            "transcribe": _transcribe,
            "bench": _bench,
        }[args.command]
        return handler(settings, args)
    except VoxloopError as e:
        log.error("%s (%s)", e.message, e.code)
        return 2


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from agent import engines
    from streaming.server import serve_forever

    engines_ = engines.load(settings, _Bar)
    # Everything loaded so far lives as long as the process: keep the collector from walking it
    # again and again (its full passes over the models' objects showed as 20-40 ms stalls).
    gc.collect()
    gc.freeze()
    asyncio.run(serve_forever(settings, engines_))
    engines_.close()
    return 0


def _models(settings: Settings, args: argparse.Namespace) -> int:
    wanted = {
        "asr": models.resolve_name(settings.asr.model),
        "llm": models.resolve_name(settings.llm.model),
        "tts": models.CATALOGUE["hibari-heart"],
        "vad": models.CATALOGUE["silero-vad-v6"],
        "eot": models.CATALOGUE["smart-turn-v3.2"] if settings.eot.backend == "smart-turn" else None,
        "speaker": models.CATALOGUE["resemblyzer-ge2e"],
    }
    if args.action == "list":
        out = []
        for m in models.CATALOGUE.values():
            used = "*" if m in wanted.values() else " "
            state = "installed" if models.is_installed(m) else "not installed"
            size = f"{m.size_bytes / 1e6:.0f} MB"
            out.append(f"{used} {m.role:7} {m.name:36} {size:>8}  {state:13}  {m.licence:10} {m.description}")
            if not models.is_installed(m):
                installs = sorted({p.install or f"pip install {p.package}" for p in m.parts})
                out.append("       " + "; ".join(installs))
        out.append(f"(* = selected by the current settings; cache: {models.home()})")
        sys.stdout.write("\n".join(out) + "\n")
        return 0
    step = models.verify if args.action == "verify" else models.prepare
    for role, entry in wanted.items():
        if entry is None:
            log.info(
                "%s: %s is not an embedded model; nothing to %s",
                role,
                settings.eot.backend if role == "eot" else getattr(settings, role).model,
                args.action,
            )
            continue
        t0 = time.perf_counter()
        path = step(entry, _Bar)
        sys.stdout.write(f"{role}: {entry.name} ok ({time.perf_counter() - t0:.1f} s) {path}\n")
    return 0


def _say(settings: Settings, args: argparse.Namespace) -> int:
    from agent.engines import load_tts

    tts = load_tts(settings)
    t0 = time.perf_counter()
    audio = tts.synthesize(args.text, args.voice)
    elapsed = time.perf_counter() - t0
    pcm = float_to_pcm(audio)
    rate = args.rate or tts.sample_rate
    pcm = resample(pcm, tts.sample_rate, rate)
    write_wav(args.output, pcm, rate)
    log.info(
        "%.2f s of audio in %.0f ms -> %s (%d Hz)",
        len(audio) / tts.sample_rate,
        elapsed * 1e3,
        args.output,
        rate,
    )
    return 0


def _voices(settings: Settings, args: argparse.Namespace) -> int:
    from agent.engines import load_tts

    tts = load_tts(settings)
    library = tts.library
    if args.action == "list":
        rows = []
        for voice in library.voices():
            default = "*" if voice.id == tts.default_voice else " "
            origin = "built-in" if voice.builtin else "enrolled"
            rows.append(f"{default} {voice.id:14} {voice.engine:8} {origin:9} {voice.licence}")
            rows.append(f"    {voice.name}: {voice.description}")
        rows.append(f"(* = the default voice, --tts-voice; enrolled voices: {library.root})")
        sys.stdout.write("\n".join(rows) + "\n")
        return 0
    if not args.voice:
        raise VoxloopError(f"voxloop voices {args.action} needs a voice id", code="bad_voice")
    if args.action == "enrol":
        return _enrol(tts, settings, args)
    if args.action == "remove":
        library.remove(args.voice)
        sys.stdout.write(f"removed {args.voice}\n")
        return 0
    if args.output is None:
        raise VoxloopError("voxloop voices preview needs -o FILE.wav", code="bad_voice")
    audio = tts.synthesize(args.text, args.voice)
    write_wav(args.output, float_to_pcm(audio), tts.sample_rate)
    log.info("%s: %.2f s -> %s", args.voice, len(audio) / tts.sample_rate, args.output)
    return 0


def _enrol(tts: Any, settings: Settings, args: argparse.Namespace) -> int:
    from agent.voices.enrol import Limits, enrol
    from streaming.encoders import decode_audio

    if args.reference is None:
        raise VoxloopError(
            "voxloop voices enrol ID REFERENCE needs a reference audio file", code="bad_reference"
        )
    try:
        audio, rate = decode_audio(args.reference.read_bytes(), settings.tts.max_reference_s)
    except (OSError, ValueError) as e:
        raise VoxloopError(f"{args.reference}: {e}", code="bad_reference") from e
    limits = Limits(min_speech_s=settings.tts.min_reference_s, max_audio_s=settings.tts.max_reference_s)
    voice, fitted = enrol(
        tts, args.voice, args.name or args.voice, audio, rate, base=args.base, limits=limits
    )
    sys.stdout.write(
        f"enrolled {voice.id}: {voice.params}\n"
        f"similarity to the reference {fitted.similarity:.2f} "
        f"(the base voice: {fitted.base_similarity:.2f}), "
        f"fitted in {fitted.elapsed_s:.1f} s; stored in {tts.library.root}\n"
    )
    return 0


def _transcribe(settings: Settings, args: argparse.Namespace) -> int:
    from agent.engines import load_asr

    pcm, rate = read_wav(args.file)
    asr = load_asr(settings, _Bar)
    transcript = asr.transcribe(pcm_to_float(resample(pcm, rate, 16000)), final=True)
    sys.stdout.write(transcript.text + "\n")
    log.info("%.2f s of audio in %.0f ms (%s)", transcript.audio_s, transcript.elapsed_s * 1e3, asr.name)
    return 0


def _bench(settings: Settings, args: argparse.Namespace) -> int:
    from streaming.devtools import bench

    return bench.main(args, settings)


def read_wav(path: Path) -> tuple[Any, int]:
    """16-bit PCM WAV (mono or stereo, mixed down) -> int16 mono samples and the rate."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise VoxloopError(f"{path}: only 16-bit PCM WAV is supported", code="bad_audio")
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            channels, rate = w.getnchannels(), w.getframerate()
    except (wave.Error, EOFError, FileNotFoundError) as e:
        raise VoxloopError(f"{path}: cannot read WAV: {e}", code="bad_audio") from e
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return data.astype(np.int16), rate


def write_wav(path: Path, pcm: Any, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())


if __name__ == "__main__":
    sys.exit(main())
