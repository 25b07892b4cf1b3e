# Two commands do all set-up on a fresh machine (README):
#   make demo   builds .venv if missing, then runs the main job
#   make test   builds .venv if missing, then runs the tests
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MPLBACKEND := Agg
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: help venv demo test test-fast lint bench ui report dvc-yaml clean-venv cifar10-jpeg quick-one-lipschitz gpu-check

# Every target with a `##` line: `make help` prints them.
help: ## list the targets, one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  make %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: SCALE=paper|quick|ci for demo, ui and report (default paper); TARGET for report; GPU_CHECK_ARGS for gpu-check"

venv: $(STAMP) ## build .venv from requirements.lock (every other target does it when needed)

# The venv is rebuilt whenever the pinned lock or the package metadata change.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.lock
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# The scale of demo, ui and report (params/build.yaml's scales: paper, quick, ci).
SCALE ?= paper
demo: $(STAMP) ## the main job: snakemake fig4 (CLL vs GloRo on two-moons); SCALE=ci for the smoke run
	$(BIN)/python -m lipcert demo --scale $(SCALE)

# CI runs everything, including the `slow` end-to-end tests (about 10 minutes on 2 cores);
# `make test-fast` (or plain pytest) runs the fast default selection.
test: $(STAMP) ## the whole test suite, slow end-to-end tests included (what CI runs)
	$(BIN)/python -m pytest -q -m "slow or not slow"

test-fast: $(STAMP) ## the fast default test selection
	$(BIN)/python -m pytest -q

lint: $(STAMP) ## snakemake --lint, snakefmt --check and the generated dvc.yaml is current
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/
	$(BIN)/python -m lipcert.dvc_pipeline --check

dvc-yaml: $(STAMP) ## regenerate dvc.yaml from params/workflow.yaml and the code's imports
	$(BIN)/python -m lipcert.dvc_pipeline

# The GPU path in one command (README "GPUs"): pytest -m gpu, then CLL 4C3F/6C2F at paper settings on generated
# CIFAR-shaped data, alone and 4 runs sharing the GPU; table in results/gpu_check/. Plain python3 with torch, numpy,
# scipy, pyyaml, tqdm and pytest is enough (no venv: GPU machines may have no package registry).
GPU_CHECK_ARGS ?=
gpu-check: ## the GPU path in one command (README "GPUs"); no venv needed
	PYTHONPATH=src $(PYTHON) -m lipcert.gpu_check $(GPU_CHECK_ARGS)

bench: $(STAMP) ## the benchmarks (docs/benchmarks.md)
	$(BIN)/python -m lipcert.bench all

# Snakemake's report of one target: its figures, tables and rendered notebooks with captions (workflow/report/).
TARGET ?= fig4
report: $(STAMP) ## build TARGET (default fig4) at SCALE, then its report: results/<SCALE>/report/<TARGET>.zip
	$(BIN)/snakemake $(TARGET) --config scale=$(SCALE)
	mkdir -p results/$(SCALE)/report
	$(BIN)/snakemake $(TARGET) --config scale=$(SCALE) --report results/$(SCALE)/report/$(TARGET).zip

# MLflow UI on one scale's results. MLflow 3 opens in its GenAI view; the printed link selects "Model training".
ui: $(STAMP) ## MLflow UI on results/<SCALE>/mlflow.db (prints the URL and the view to pick)
	@echo "MLflow UI of results/$(SCALE)/mlflow.db: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
	@echo "  MLflow 3 opens in its GenAI view: pick 'Model training' in the 'GenAI | Model training' switch at the top of"
	@echo "  the side bar (the link above selects it), open an experiment (two_moons, cifar10, ...) and its Runs table:"
	@echo "  one parent row per configuration (means over its seeds); expand it for the seed runs. Ctrl-C stops the UI."
	$(BIN)/mlflow ui --backend-store-uri sqlite:///results/$(SCALE)/mlflow.db --host 127.0.0.1 --port 5000

# The real CIFAR-10 (JPEG export) of the shared data folder, extracted once (md5-checked, atomic) into the
# git-ignored data_cache/; use it with LIPCERT_DATA_ROOT=$(CURDIR)/data_cache (README, "Image data").
CIFAR10_JPEG_TAR ?= ../shared/data/cifar-10-jpg/CIFAR-10-images.tar.gz
CIFAR10_JPEG_MD5 ?= 85831f2b9a6b0de08b6d8fd7386ffa93
cifar10-jpeg: $(STAMP) ## extract the shared CIFAR-10 JPEG export into data_cache/ (md5-checked)
	$(BIN)/python -m lipcert extract-archive $(CIFAR10_JPEG_TAR) data_cache/cifar10 --md5 $(CIFAR10_JPEG_MD5)

# Issue 6 CPU check: each 1-Lipschitz family (small size variant) with its own loss and with CLL on the CIFAR-10
# JPEG export (make cifar10-jpeg first), a few epochs, two runs at a time with one thread each.
# Results: results/quick/one_lipschitz/<method>/metrics.json (docs/benchmarks.md, section 4).
Q1L := results/quick/one_lipschitz
Q1L_SETS := --set data.subset_train=100 --set data.subset_test=50 --set epochs=4 --set eval_every=4 --set batch_size=64
Q1L_RUNS := soc:LipConv-10 cll_lipconv:LipConv-10 cpl:CPL-S cll_cpl:CPL-S sll:SLL-S cll_sll:SLL-S lbdn:Sandwich-S cll_lbdn:Sandwich-S
quick-one-lipschitz: $(STAMP) ## issue 6 CPU check of the 1-Lipschitz families (needs make cifar10-jpeg)
	mkdir -p $(Q1L)
	LIPCERT_DATA_ROOT=$(CURDIR)/data_cache $(BIN)/python -m lipcert prepare-data --params params/cifar10.yaml \
	  --set data.subset_train=100 --set data.subset_test=50 --out $(Q1L)/cifar10.npz
	printf '%s\n' $(Q1L_RUNS) | xargs -P 2 -I{} sh -c 'm=$${1%%:*}; a=$${1#*:}; \
	  $(BIN)/python -m lipcert train --params params/cifar10.yaml --experiment $$m --seed 1 $(Q1L_SETS) \
	  --set model=$$a --data $(Q1L)/cifar10.npz --out $(Q1L)/$$m --threads 1 --no-mlflow --no-progress \
	  > $(Q1L)/$$m.log 2>&1' _ {}

clean-venv: ## remove .venv
	rm -rf $(VENV)
