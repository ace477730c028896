# Every target creates and uses the project's own virtual environment (.venv), so a fresh
# machine needs nothing but python3 (>= 3.11).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install browser generate check-generated check format test bench run screenshots clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## Create .venv and install the project with its development tools

browser: $(STAMP)  ## Install what the browser tests use: Debian's chromium, analytics.js from npm
	command -v chromium >/dev/null || { apt-get update && apt-get install -y --no-install-recommends chromium; }
	cd tests/browser && npm install --no-audit --no-fund --no-package-lock --loglevel=error

generate: $(STAMP)  ## Regenerate src/attentive_router/_generated and docs/mappings.md from spec/
	$(BIN)/python -m codegen

check-generated: $(STAMP)  ## Fail when the committed generated files are stale
	$(BIN)/python -m codegen --check

check: $(STAMP)  ## Format check, lint, mypy --strict, generated-in-sync (never fixes anything)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy --strict
	$(BIN)/python -m codegen --check

format: $(STAMP)  ## Apply the formatter and the lint autofixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP)  ## Run the test suite
	$(BIN)/pytest

bench: $(STAMP)  ## Throughput benchmarks, measured side by side in one run
	$(BIN)/python -m bench

run: $(STAMP)  ## Demo: send the bundled sample events to a local Attentive sandbox (no account needed)
	$(BIN)/attentive-router demo

screenshots: $(STAMP)  ## Regenerate the console screenshots in docs/ (needs make browser)
	$(BIN)/python -m tests.console_screenshots docs

clean:  ## Remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
