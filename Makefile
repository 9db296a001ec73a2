# The two commands a new user needs: `make demo` and `make test`.
# Both go through scripts/bootstrap (idempotent: system tools, then .venv).
SHELL := /bin/bash
VENV := .venv
PYTEST_WORKERS ?= 2

.PHONY: bootstrap demo test lint bench clean

bootstrap:
	@scripts/bootstrap

demo: bootstrap
	$(VENV)/bin/drctl demo --dir $(CURDIR)/demo-out

test: bootstrap
	$(VENV)/bin/ruff check drctl tests
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile

lint: bootstrap
	$(VENV)/bin/ruff check drctl tests
	$(VENV)/bin/ruff format --check drctl tests
	$(VENV)/bin/lint-imports

bench: bootstrap
	$(VENV)/bin/python -m bench.run

clean:
	rm -rf demo-out bench/work .pytest_cache
