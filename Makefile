# The two commands of the README, each installing what it needs into .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export NO_GCE_CHECK ?= true

.PHONY: demo test bench

$(VENV)/.installed: setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m sandwich.demo

test: $(VENV)/.installed
	$(PY) -m pytest

bench: $(VENV)/.installed
	for script in benchmarks/*.py; do $(PY) $$script || exit 1; done
