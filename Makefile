# churnml: `make demo` runs the whole product on a simulated book; `make test` runs every test.
# Both create .venv and install the project into it when needed, so a fresh machine needs
# nothing but Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo

# No internet here: the libraries must never try to phone home.
export BENTOML_DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export PYTHONHASHSEED := 0

.PHONY: install system-packages demo test test-unit bench bento clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# What `make test` needs besides Python (Debian/Ubuntu): Java 17 for the Spark tests, the
# PostgreSQL server binaries for the PostgreSQL tests and Chromium for the browser tests of
# `churnml ui` (docs/operations.md). Without them those tests fail naming the package; they are
# never skipped (run as root with apt-get, the browser tests install chromium themselves).
system-packages:
	$(if $(shell command -v sudo),sudo) apt-get update
	$(if $(shell command -v sudo),sudo) apt-get install -y openjdk-17-jre-headless postgresql chromium

demo: $(STAMP)
	$(VENV)/bin/churnml demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest tests -q

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

# Benchmarks take minutes and gigabytes (50,000 simulated accounts); they are not tests.
bench: $(STAMP)
	$(PY) benchmarks/simulator.py
	$(PY) benchmarks/loading.py
	$(PY) benchmarks/features.py
	$(PY) benchmarks/training.py
	$(PY) benchmarks/scoring.py
	$(PY) benchmarks/serving.py
	$(PY) benchmarks/monitoring.py

# A self-contained Bento of the prediction service: the champion models (from the MLflow
# registry under CHURNML_HOME), the churnml package and its configuration. Needs a trained
# champion for both targets (`churnml train`). Serve it with `bentoml serve <printed tag>`.
bento: $(STAMP)
	$(PY) serving/build_bento.py

clean:
	rm -rf $(VENV) .churnml $(DEMO_OUT) .pytest_cache .hypothesis
