# `make demo` and `make test` do all the setup on a fresh machine (Python 3.11 + pip).
VENV ?= .venv
PY := $(VENV)/bin/python
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := False

KFP_VENV ?= .venv-kfp
KFP_PY := $(KFP_VENV)/bin/python

.PHONY: setup demo test test-main test-fast test-kfp kfp-setup kfp-compile kfp-run-local locks \
	benchmark benchmark-quick dvc-repro mlflow-ui airflow clean

setup: $(VENV)/.installed

# Exact versions from requirements.lock; the package itself in editable mode.
$(VENV)/.installed: requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

demo: setup  ## generate the bundled benchmark and run every batch through the pipeline
	$(VENV)/bin/vidcil demo

test: test-main test-kfp  ## the whole test suite (CI runs exactly this)

test-main: setup  ## everything but the Kubeflow pipeline's tests
	$(PY) -m pytest

# Kubeflow Pipelines in its own venv: kfp pins kubernetes<31, the Airflow provider needs >=32.
kfp-setup: $(KFP_VENV)/.installed

$(KFP_VENV)/.installed: pipelines/requirements.lock pyproject.toml
	python3 -m venv $(KFP_VENV)
	$(KFP_PY) -m pip install --quiet --upgrade pip
	$(KFP_PY) -m pip install --quiet -r pipelines/requirements.lock
	$(KFP_PY) -m pip install --quiet --no-deps -e .
	touch $@

test-kfp: kfp-setup  ## the Kubeflow pipeline: compiled and checked, run end to end with kfp.local
	$(KFP_PY) -m pytest tests/runners/test_kfp_pipeline.py

kfp-compile: kfp-setup  ## the Kubeflow pipeline as KFP v2 YAML: reports/kfp/vidcil-batch.yaml
	$(KFP_PY) -m pipelines.kfp_pipeline compile --out reports/kfp/vidcil-batch.yaml

kfp-run-local: kfp-setup  ## one batch through the Kubeflow pipeline here (kfp.local): make kfp-run-local BATCH=b000
	$(KFP_PY) -m pipelines.kfp_pipeline run-local $(or $(BATCH),b000) --project-dir .

locks: setup  ## rederive the images' and the Kubeflow venv's locks from requirements.lock
	$(PY) infra/lock.py

test-fast: setup  ## unit tests only
	$(PY) -m pytest -m "not e2e"

benchmark: setup  ## every method side by side on the bundled stream, 3 seeds (reports/benchmark/)
	$(VENV)/bin/vidcil benchmark

benchmark-quick: setup  ## the same on a tiny stream, one seed: a smoke run (numbers mean nothing)
	$(VENV)/bin/vidcil benchmark --quick --out reports/benchmark-quick

dvc-repro: setup  ## reproduce the stream with DVC
	$(VENV)/bin/dvc repro

mlflow-ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

airflow: setup  ## Airflow 3 standalone on this checkout (SQLite), UI on http://127.0.0.1:8080
	AIRFLOW_HOME=$(CURDIR)/.airflow AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags AIRFLOW__CORE__LOAD_EXAMPLES=False \
	VIDCIL_PROJECT_DIR=$(CURDIR) PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/airflow standalone

clean:  ## remove everything the demo wrote (not the venv)
	rm -rf data runs reports mlflow.db mlartifacts dvc-remote .dvc/cache .dvc/tmp
