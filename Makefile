# The two commands of the README:
#   make run   - set up and run the whole system in simulation mode
#   make test  - set up and run the test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test test-fast setup bench

setup:
	@bash scripts/setup.sh

# Ctrl-C is how the system is stopped: honcho's exit status 130 (SIGINT) is a clean stop, not an error.
run: setup
	@bash scripts/run.sh || [ $$? -eq 130 ]

test: setup
	@bash scripts/test.sh $(PYTEST_ARGS)

test-fast: setup
	@bash scripts/test.sh -m "not slow and not browser" $(PYTEST_ARGS)

bench: setup
	@for b in bench/[!_]*.py; do echo "== $$b"; TRADEOPS_DEV=$${TRADEOPS_DEV:-true} $(PY) $$b || exit 1; done
