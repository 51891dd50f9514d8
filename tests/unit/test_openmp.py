"""The OpenMP spin policy is in place before any library that brings an OpenMP runtime is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_PROBE = """
import json, os, sys
heavy = ("torch", "llama_cpp", "ctranslate2", "faster_whisper", "onnxruntime", "transformers")
seen = []
def hook(event, args):
    if event == "import" and args[0].split(".")[0] in heavy:
        seen.append([args[0], os.environ.get("GOMP_SPINCOUNT")])
sys.addaudithook(hook)
import streaming.cli
from agent.engines import load
import agent.asr.faster_whisper, agent.llm.llama_cpp, agent.eot.smart_turn, agent.vad.silero
import llama_cpp, ctranslate2, torch
print(json.dumps({"seen": seen, "value": os.environ.get("GOMP_SPINCOUNT")}))
"""


def _probe(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_the_spin_count_is_set_before_any_openmp_library_loads() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    result = _probe(env)
    seen = result["seen"]
    assert isinstance(seen, list) and {name.split(".")[0] for name, _ in seen} >= {"llama_cpp", "torch"}
    assert all(value == "1000" for _, value in seen), seen
    assert result["value"] == "1000"


def test_a_spin_count_from_the_environment_wins() -> None:
    result = _probe({**os.environ, "GOMP_SPINCOUNT": "50"})
    assert result["value"] == "50"


def test_serving_imports_no_torch_before_the_models_load() -> None:
    """torch brings its own libgomp: imported when the server module loads (before llama.cpp), it
    made every LLM decode ~25 % slower. The speaker encoder's modules are imported where used."""
    probe = (
        "import sys, streaming.server, streaming.cli\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
