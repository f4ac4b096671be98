# Two entry points for a fresh Debian/Ubuntu machine: `make run` and `make test`.
# Both run the idempotent set-up first (system libjpeg-turbo, .venv, pinned packages).
SHELL := /bin/bash
VENV := .venv
export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup run test lint format repro ui lock clean params serve shipped-model

setup:
	@bash scripts/setup.sh

## run: set-up + the whole pipeline on the embedded default (dvc repro), then where results are
run: setup
	@bash scripts/run_pipeline.sh

## test: set-up + lint (seconds, fails first) + the whole test suite (integration and e2e included),
## in TEST_WORKERS processes: most of an end-to-end test's time is process start-up and waiting on
## Ray, DVC and servers, so two files at once fill two cores (measured serial -> 2: 14 min 54 s ->
## 11 min 41 s AMD EPYC AVX-512, 19 min 59 s -> 12 min 55 s Intel Xeon AVX-512; README "Tests").
## TEST_WORKERS=1 runs them one by one
TEST_WORKERS ?= 2
test: setup lint
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

## lint: ruff's checks and format check (settings in pyproject.toml); `make format` fixes most
lint: setup
	@$(VENV)/bin/ruff check --quiet . || { echo "lint: fix the lines above (many: make format)" >&2; exit 1; }
	@$(VENV)/bin/ruff format --check --quiet . || { echo "lint: files above are not formatted: make format" >&2; exit 1; }

## format: ruff format + the fixable lint findings
format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## params: compose params.yaml from conf/ after editing conf/ (as `dvc exp run` does), e.g.
## make params OVERRIDES="preset=paper train.lr=5e-4"
params: setup
	$(VENV)/bin/python -m cajnn.config.compose $(OVERRIDES)

## ui: the MLflow UI on the local store at http://127.0.0.1:5000
ui: setup
	@echo "MLflow UI: http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning (the runs; Ctrl-C stops it)"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db --host 127.0.0.1 --port 5000

## serve: the registry's champion as a REST API on 127.0.0.1:$(SERVE_PORT) (POST /invocations);
## MLflow starts uvicorn from PATH, which this Makefile puts .venv/bin on
SERVE_PORT ?= 5001
serve: setup
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///mlflow/mlflow.db} \
	  $(VENV)/bin/mlflow models serve -m models:/cajnn@champion --env-manager local -h 127.0.0.1 -p $(SERVE_PORT)

## shipped-model: retrain the model shipped in the package (about 70 min on 2 cores; a rerun after
## an interruption resumes from its last checkpoint), then export it into cajnn/shipped/cpu-base
shipped-model: setup
	dvc exp run -S preset=cpu-base -n cpu-base-$$(date +%Y%m%d-%H%M)
	$(VENV)/bin/python -m cajnn.shipped.export --name cpu-base

## lock: re-resolve the direct dependencies and rewrite requirements.lock (maintainers only)
lock:
	rm -rf /tmp/cajnn-lock && python3 -m venv /tmp/cajnn-lock
	/tmp/cajnn-lock/bin/pip install -q --upgrade pip
	/tmp/cajnn-lock/bin/pip install -q -e '.[test]'
	/tmp/cajnn-lock/bin/pip freeze --all --exclude-editable | grep -v '^pip==' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements.lock

clean:
	rm -rf data/raw data/patches models reports runs mlflow

.PHONY: retrain
## retrain: set-up + `cajnn retrain`: if new web-platform data landed in register.retrain.source
## (or $$CAJNN_RETRAIN_SOURCE), fine-tune the champion, evaluate, register (infra/README.md)
retrain: setup
	$(VENV)/bin/cajnn retrain $(RETRAIN_ARGS)
