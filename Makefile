# One command each: `make test` (format, lint, types, infra checks, tests) and `make demo` (the local stack).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint format clean install

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Unit tests with line coverage of worker/ (the floor is the measured figure, rounded down); then the
# rest (integration, emulator, infra), without coverage: the function runs in its own process there.
COVERAGE_FLOOR := 93

test: lint
	bash infra/terraform/check.sh
	$(BIN)/pytest -q tests/unit --cov=worker --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)
	$(BIN)/pytest -q --ignore=tests/unit

demo: $(STAMP)
	$(BIN)/python -m infra.local.demo $(DEMO_ARGS)

$(VENV)/.bench-installed: $(STAMP) requirements-bench.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
