"""voxloop's agent: what is heard, decided and said. Never imports a transport."""

import os

__version__ = "0.1.0"

# Three OpenMP runtimes share this process's cores: llama.cpp's (the system libgomp, or torch's copy of
# it), CTranslate2's (its own bundled libgomp) and torch's. Each spin-waits at its barriers, by default
# for 300,000 turns before it sleeps, and none knows of the others: on two cores an LLM decode beside an
# ASR pass ran at 4-5 tokens/s instead of 35-39, and the ASR took 1.2-1.3 s instead of 0.45 s (measured:
# docs/benchmarks.md). 1000 turns keeps a lone decode as fast and lets the other runtime have the core.
# libgomp reads this once, when it is loaded, so it is set here, before any model library is imported;
# a value already in the environment wins.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
