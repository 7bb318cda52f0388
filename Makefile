# Entry points: `make demo` (mini speech recipe end to end) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast test-data lint sysdeps clean

# espeak-ng synthesizes the mini speech corpus; install it when missing (root: apt-get).
sysdeps:
	@bash tools/install_sysdeps.sh

# --no-cache-dir: the CUDA build of torch and its libraries take several GB in the venv; a second copy in pip's
# cache does not fit every CI disk (a run failed with 'No space left on device' while installing).
$(STAMP): pyproject.toml constraints.txt
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --no-cache-dir -c constraints.txt -e ".[test]"
	@touch $(STAMP)

setup: sysdeps $(STAMP)

demo: setup
	bash egs/mini_speech/star/run.sh --teacher pretrain --teacher_conf ../conf/pretrain_teacher.yaml \
		--conf conf/distill_pretrained.yaml

# ruff (pyproject.toml's [tool.ruff]) over the whole tree.
lint: setup
	$(VENV)/bin/ruff check .

# pytest over every core (pytest-xdist), a test file per worker at a time (a file's fixtures are built once),
# one thread per process: most slow tests are recipes whose time is Python start-up and tiny models, and
# OpenMP threads of processes side by side on two cores slow each other down many times over (measured: the
# DiffBlender fault test takes 54 s alone and 416 s beside a one-thread training run).
PYTEST := OMP_NUM_THREADS=1 $(VPY) -m pytest -q -n auto --dist loadfile

# The lint, then the whole suite, integration runs of the mini recipes and the 2-process DDP test included.
test: lint
	$(PYTEST)

# Unit tests only (skips tests marked slow).
test-fast: lint
	$(PYTEST) -m "not slow"

# Optional real test data (FSDD, Omniglot, ICBHI and LibriSpeech samples, about 36 MB) into .test-data/, every
# file checked against the sha256 in tools/test_data.json; reruns skip what is in place. Needs only python3.
test-data:
	$(PYTHON) tools/fetch_test_data.py --dest .test-data

clean:
	rm -rf egs/mini_*/*/data egs/mini_*/*/exp egs/mini_*/*/dump egs/mini_*/*/corpus
