# mpguard — the two commands a newcomer needs are `make demo` and `make test`.
# Each sets up .venv from nothing (Python 3.11 + pip) when it is missing or stale.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STUBS  := $(VENV)/mpstubs
STUBS_PIN := micropython-esp32-esp32-generic-stubs==1.29.0.post1
PYTEST_ARGS ?=
# pytest-xdist workers of `make test`: one more than the CPUs, at most 6 (the suite's tests
# wait on boards and services part of the time: on the 2-core reference machine 3 workers
# left 6 % of it idle, 2 workers 17 %); 0 runs the suite in one process, e.g. to read a
# failure's output in order.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n + 1 < 6 ? n + 1 : 6 )))
# Python may keep the compiled form of mpguard's own modules (an editable install is not
# compiled by pip): the suite starts hundreds of `mpguard` and sim processes, and with
# PYTHONDONTWRITEBYTECODE set in the environment each compiled every module from source.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: all demo test lint bench clean help

all: help

help:
	@echo "make demo    - the mpguard story on a virtual board"
	@echo "make test    - lint + every test (agent on MicroPython, host, end-to-end on the sim)"
	@echo "make lint    - ruff on host code, mypy of agent/ against the ESP32 MicroPython stubs"
	@echo "make bench   - sizes, speed and memory figures for the README's numbers table"

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade --target $(STUBS) $(STUBS_PIN)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mpguard demo

lint: $(STAMP)
	$(BIN)/ruff check host_tools tests bench
	cd agent && MYPYPATH=../$(STUBS) ../$(BIN)/mypy --config-file mypy.ini \
		--custom-typeshed-dir ../$(STUBS) guard

test: lint
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
