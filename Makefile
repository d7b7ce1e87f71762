# The two set-up commands of the README. Both build .venv on first use:
# torch (CPU build where available) first, then coldrec with its test tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR := runs/demo

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/coldrec data prepare --source synthetic --out $(DEMO_DIR)/data
	$(BIN)/coldrec data stats $(DEMO_DIR)/data

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
