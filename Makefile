# Two commands for a newcomer: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench package deploy clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dqad demo

lint: $(STAMP)
	$(BIN)/ruff check shared services tests bench

test: $(STAMP) lint
	$(BIN)/pytest -n 2

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) dqad-demo .pytest_cache
