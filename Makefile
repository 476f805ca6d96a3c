# Ghostgate: `make run` and `make test` work on a fresh machine with Python 3.11.
# They create .venv, install the pinned dependencies, and install the Debian
# packages the tests drive (redis-server, h2load) when they are missing.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ARGS   ?=
LITELLM_VERSION := 1.106.0
LITELLM := .venv-litellm/bin/litellm

.PHONY: run run-single test lint typecheck unit e2e bench bench-deps system-deps clean

run: $(STAMP)
	$(BIN)/python run.py up --multi-region $(ARGS)

run-single: $(STAMP)
	$(BIN)/python run.py up $(ARGS)

test: $(STAMP) system-deps lint typecheck
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest -m "not e2e"

e2e: $(STAMP) system-deps
	$(BIN)/pytest -m e2e

# Property-based fuzzing at scale: the "fuzz" hypothesis profile runs 10,000+
# cases against a live region and router (tests/fuzz; no per-test timeout, it
# takes a while), then atheris on the request parsers. Crashes go to results/fuzz/.
FUZZ_RUNS ?= 200000
.PHONY: fuzz soak
fuzz: $(STAMP) system-deps
	$(BIN)/pytest tests/fuzz --hypothesis-profile=fuzz --timeout=0
	mkdir -p results/fuzz
	$(BIN)/python -m tests.fuzz.parsers -atheris_runs=$(FUZZ_RUNS) -max_len=8192 \
	  -artifact_prefix=results/fuzz/

# A soak run (loadtests/soak.py): typing, cancels, reconnects and bad input for
# $(MINUTES) minutes; fails on growth of RSS, fds or tasks. Writes results/soak.json.
MINUTES ?= 60
soak: $(STAMP)
	$(BIN)/python -m loadtests.soak --minutes $(MINUTES)

# The gateway's cost against the backend, nginx and LiteLLM (loadtests/bench).
bench: $(STAMP) system-deps bench-deps $(LITELLM)
	$(BIN)/python -m loadtests.bench $(ARGS)

# LiteLLM's proxy, the other reference, in a venv of its own: it pins its own
# openai, httpx and pydantic, which are not Ghostgate's.
$(LITELLM):
	$(PYTHON) -m venv .venv-litellm
	.venv-litellm/bin/python -m pip install --quiet --upgrade pip
	.venv-litellm/bin/python -m pip install --quiet 'litellm[proxy]==$(LITELLM_VERSION)'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Ghostgate needs Python 3.11, found " + sys.version.split()[0]'
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# redis-server for the shared-state tests, h2load (nghttp2-client) for HTTP/2 load.
system-deps:
	@command -v redis-server >/dev/null && command -v h2load >/dev/null || { \
	  echo "installing redis-server and nghttp2-client from Debian"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server nghttp2-client >/dev/null; }

# nginx-light for the benchmark's reference path; the bench runs its own nginx on
# a free port, so the system service the package starts is stopped again.
bench-deps:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { \
	  echo "installing nginx-light from Debian (the benchmark's reference proxy)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx-light >/dev/null; \
	  $(SUDO) service nginx stop >/dev/null 2>&1 || true; }

clean:
	rm -rf $(VENV) .venv-litellm .pytest_cache .mypy_cache .ruff_cache *.egg-info
