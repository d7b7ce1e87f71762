# The two set-up commands of the README. Both build .venv on first use:
# torch first, then coldrec with its test tools. TORCH_PIP_ARGS passes extra pip
# options for torch alone, e.g. an index of CPU-only wheels on machines whose pip
# would otherwise fetch the large CUDA build.
PYTHON ?= python3
TORCH_PIP_ARGS ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR := runs/demo

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/coldrec data prepare --source synthetic --out $(DEMO_DIR)/data
	$(BIN)/coldrec data stats $(DEMO_DIR)/data
	for model in popularity itemknn bm25; do \
	  $(BIN)/coldrec -q evaluate --dataset $(DEMO_DIR)/data --model $$model --out $(DEMO_DIR)/$$model || exit 1; \
	done
	$(BIN)/coldrec report $(DEMO_DIR)/popularity $(DEMO_DIR)/itemknn $(DEMO_DIR)/bm25 --out $(DEMO_DIR)/report

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
