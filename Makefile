# The two commands a newcomer needs are `make demo` and `make test`; both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint bench demo fmt clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Both benchmarks print their targets and exit non-zero when one is missed; `-` keeps going so
# that one run shows every figure. bench/sync.py takes about a quarter of an hour here.
# bench/threads.py shows which crypto calls a thread pool can spread over cores; bench/console.py
# preloads a million cases (a few minutes) and times the console's pages; bench/hashes.py loads a
# million PDQ and a million SHA-256 hashes (about two minutes) and times their matching.
bench: $(STAMP)
	-$(BIN)/python bench/envelope.py
	-$(BIN)/python bench/threads.py
	-$(BIN)/python bench/sync.py
	-$(BIN)/python bench/console.py
	-$(BIN)/python bench/hashes.py

# `make demo KEEP=1` leaves the three nodes running with their consoles open, until Ctrl-C.
demo: $(STAMP)
	$(BIN)/python demo/run.py $(if $(KEEP),--keep)

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
