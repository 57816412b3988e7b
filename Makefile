# One-command set-up: `make demo` runs the pipeline on the bundled samples, `make test` the tests.
# Both create the virtual environment .venv and install requirements.txt on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_output
DEMO_RES ?= 8
DEMO_PATCH_RES ?= 6

.PHONY: install demo test lint bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip check
	touch $@

install: $(VENV)/.installed

demo: install
	DEMO_DIR=$(DEMO_DIR) DEMO_RES=$(DEMO_RES) DEMO_PATCH_RES=$(DEMO_PATCH_RES) \
		PATH=$(abspath $(BIN)):$$PATH bash scripts/demo.sh

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m benchmarks.bench_sampling
	$(BIN)/python -m benchmarks.bench_structure
	$(BIN)/python -m benchmarks.bench_sdpaconv
	$(BIN)/python -m benchmarks.bench_model
	$(BIN)/python -m benchmarks.bench_sphere_memory

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache
