# Everything a fresh machine needs: `make demo`, `make test`, `make bench`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-demo
# Peers (Huey) are installed only here, never into the dev/test venv.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-bench

.PHONY: demo test lint typecheck pytest bench soak clean chromium postgresql

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Two distributions: the library (honker-py, this directory) and belfry (honker-belfry,
# apps/belfry, which depends on the library). Installed together, pip takes the library
# from this checkout instead of looking it up on PyPI.
APPS := apps/belfry

$(STAMP): $(BIN)/python pyproject.toml $(APPS)/pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e $(APPS)
	touch $(STAMP)

$(DEMO_STAMP): $(BIN)/python pyproject.toml $(APPS)/pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dashboard]' -e $(APPS)
	touch $(DEMO_STAMP)

# Leaves demo.db (gitignored) behind and ends with the command that opens it.
demo: $(DEMO_STAMP)
	$(BIN)/python examples/belfry_demo.py
	@echo
	$(BIN)/python examples/demo.py demo.db
	@echo
	@echo "Open the demo database in the dashboard (Ctrl-C stops it):"
	@echo "  $(BIN)/python -m honker dashboard demo.db"

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict src $(APPS)/src

# Debian's Chromium for the dashboard's browser tests (driven by Playwright with
# executable_path=/usr/bin/chromium; never `playwright install`).
chromium:
	@test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; } \
	  || echo "warning: chromium could not be installed; the dashboard browser tests will be skipped" >&2

# Debian's PostgreSQL server binaries for the PostgreSQL engine's tests. The tests start a
# throwaway cluster of their own (tests/pg.py); the package's default cluster is not used.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql; } \
	  || echo "warning: postgresql could not be installed; the PostgreSQL engine tests will be skipped" >&2

pytest: $(STAMP) chromium postgresql
	$(BIN)/python -m pytest -n 2 -q

test: lint typecheck pytest

$(BENCH_STAMP): pyproject.toml bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[postgres]' -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python bench/run_all.py

soak: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .mypy_cache .ruff_cache
