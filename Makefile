# make train: the default experiment (MNIST DDPM) at a CPU-sized budget; make test: the test suite;
# make lint: ruff format --check and ruff check; make docs: the mkdocs site into site/ (--strict); make proof: every variant's preset trained, sampled and measured into docs/results (PROOF_ARGS="--device gpu").
# Each creates .venv and installs the project into it first.
VENV ?= .venv
# make test: pytest-xdist processes (each test file runs whole in one of them)
TEST_WORKERS ?= 2
PY := $(VENV)/bin/python
# The read-only dataset folder beside the checkout when there is one, else ./data (downloaded).
VDIFF_DATA_DIR ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data),$(CURDIR)/data)
export VDIFF_DATA_DIR

.PHONY: install train test lint docs proof clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) train.py experiment=mnist_ddpm_cpu hydra.run.dir=logs/mnist_ddpm/cpu_run ckpt_path=last

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

docs: install
	$(VENV)/bin/mkdocs build --strict --site-dir site

proof: install
	$(PY) -m vdiff.proof $(PROOF_ARGS)

clean:
	rm -rf logs outputs multirun .pytest_cache site
