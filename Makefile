# One-command set-up: `make demo` runs the pipeline on the bundled samples, `make test` the tests.
# Both create the virtual environment .venv and install requirements.txt on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_output
DEMO_RES ?= 8
DEMO_PATCH_RES ?= 6
DEMO_EPOCHS ?= 80
DEMO_CHANNELS ?= 64 96
DEMO_CI_DIR ?= demo_ci_output

.PHONY: install demo demo-ci rd-study rd-study-medium test lint bench gpu-check clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip check
	touch $@

install: $(VENV)/.installed

demo: install
	DEMO_DIR=$(DEMO_DIR) DEMO_RES=$(DEMO_RES) DEMO_PATCH_RES=$(DEMO_PATCH_RES) \
		DEMO_EPOCHS=$(DEMO_EPOCHS) DEMO_CHANNELS="$(DEMO_CHANNELS)" \
		PATH=$(abspath $(BIN)):$$PATH bash scripts/demo.sh

# The same pipeline in about a minute (CI): resolution 6, one epoch of a tiny model.
demo-ci: install
	DEMO_DIR=$(DEMO_CI_DIR) DEMO_RES=6 DEMO_PATCH_RES=6 DEMO_EPOCHS=1 DEMO_CHANNELS="16 24" \
		DEMO_PATCHES=3 DEMO_BATCH=6 PATH=$(abspath $(BIN)):$$PATH bash scripts/demo.sh

# The RD study of docs/RESULTS.md: OSLO, DeepSphere, CompressAI on ERP, JPEG / WebP / JPEG 2000
# on the bundled samples (about 40 minutes on 2 CPU cores; resumable).
rd-study: install
	$(BIN)/python experiments/rd_study.py --small -O runs/rd_small

# The medium RD study of docs/RESULTS.md: 2 seeds, 24 training maps, cosine, every point
# fine-tuned from a base model per method and seed (about 80 min on 2 CPU cores, two trainings
# at a time; resumable).
rd-study-medium: install
	$(BIN)/python experiments/rd_study.py --medium -O runs/rd_medium

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m benchmarks.bench_sampling
	$(BIN)/python -m benchmarks.bench_structure
	$(BIN)/python -m benchmarks.bench_eval
	$(BIN)/python -m benchmarks.bench_sdpaconv
	$(BIN)/python -m benchmarks.bench_model
	$(BIN)/python -m benchmarks.bench_sphere_memory
	$(BIN)/python -m benchmarks.bench_codec

# On a CUDA machine (a few minutes): training steps on both convolution paths, evaluation,
# CPU-encoded file decoded on CUDA, one NCCL torchrun step; without a GPU it says so.
gpu-check: install
	$(BIN)/python scripts/gpu_check.py

clean:
	rm -rf $(DEMO_DIR) $(DEMO_CI_DIR) .pytest_cache .ruff_cache
