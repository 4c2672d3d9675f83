# executus_nb — two commands: `make demo` (run the quickstart offline) and `make test` (everything).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export LITELLM_LOCAL_MODEL_COST_MAP := True
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# setuptools' notice on every editable install ("Editable installation… be careful with folders…") is
# for its own maintainers' users, not ours; the install is quiet otherwise.
EDITABLE := PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q -e
export JUPYTER_PLATFORM_DIRS := 1

.PHONY: demo lab lint test test-ray notebooks bench bench-own chromium clean

$(VENV)/.demo: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(EDITABLE) '.[notebook]'
	touch $@

$(VENV)/.dev: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(EDITABLE) '.[dev]'
	touch $@ $(VENV)/.demo

## demo: execute notebooks/01_quickstart.ipynb headless on the sim/ model; HTML under build/
demo: $(VENV)/.demo
	$(PY) scripts/demo.py notebooks/01_quickstart.ipynb build/

## lab: JupyterLab on notebooks/
lab: $(VENV)/.demo
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root,) notebooks/

## chromium: Debian's Chromium for the browser tests (installed when missing)
chromium:
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }

## lint: ruff's checks and its format check over the package, tests, benchmarks and scripts; mypy over the package
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check executus_nb tests bench scripts
	$(VENV)/bin/ruff format --check executus_nb tests bench scripts
	$(VENV)/bin/mypy

## test: lint, unit tests, every notebook under strict nbval, and the real-browser test
test: $(VENV)/.dev chromium lint
	$(PY) -m pytest -n 2 --dist loadfile tests --ignore=tests/ray \
	    --nbval notebooks --nbval-sanitize-with notebooks/sanitize.cfg -p no:randomly

## test-ray: the Ray backend's tests, apart: a local Ray listens on every interface of the machine (Ray will
## not bind to 127.0.0.1 alone), where make test's servers listen on 127.0.0.1 only
test-ray: $(VENV)/.dev
	$(EDITABLE) '.[ray]'
	$(PY) -m pytest tests/ray -p no:randomly

## notebooks: re-execute every notebook in place (the committed outputs)
notebooks: $(VENV)/.demo
	for nb in notebooks/*.ipynb; do \
	    $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	        --ExecutePreprocessor.store_widget_state=False "$$nb" || exit 1; done

$(VENV)/.bench: pyproject.toml $(VENV)/.dev
	$(EDITABLE) '.[dev,bench]'
	touch $@

## bench: executus_nb beside pydantic-ai, the OpenAI Agents SDK and a bare litellm loop on the same loopback
## work (bench/RESULTS.md and bench/results.json, with a profile of the fan-out; ~15 min; BENCH_ARGS=--quick: 3 min)
BENCH_ARGS ?= --profile
bench: $(VENV)/.bench
	$(PY) bench/compare.py $(BENCH_ARGS)

## bench-own: executus_nb's own benchmarks (bench/bench_*.py: medians and ratios against a baseline, not tests)
bench-own: $(VENV)/.dev
	for b in bench/bench_*.py; do $(PY) "$$b" || exit 1; done

clean:
	rm -rf build .venv
