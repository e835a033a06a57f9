# Two commands for a newcomer: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.PHONY: demo test lint bench lock package deploy clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# checkov pins boto3/botocore versions that conflict with .venv: it gets its own venv.
$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov>=3.2,<4'
	touch $(CHECKOV_STAMP)

demo: $(STAMP)
	$(BIN)/dqad demo

lint: $(STAMP)
	$(BIN)/ruff check shared services tests bench scripts terraform/gen_topology.py
	$(BIN)/mypy shared services

# The browser test of `dqad serve` drives Debian's Chromium through Playwright (Playwright's own
# browser download does not work here); a fresh machine or CI runner gets it from apt.
chromium:
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }

test: $(STAMP) $(CHECKOV_STAMP) lint chromium
	$(BIN)/pytest -n 2 --dist loadgroup

bench: $(STAMP)
	$(BIN)/python -m bench.run

# Hash-locked requirements (services/<stage>/requirements*.lock) from requirements*.txt, for Lambda's 3.12.
lock: $(STAMP)
	$(BIN)/python scripts/lock.py $(SERVICE)

package: $(STAMP)
	@test -n "$(SERVICE)" || { echo "usage: make package SERVICE=<fetcher|labeler|trainer|scorer|notifier>"; exit 2; }
	$(BIN)/python scripts/package.py $(SERVICE)

deploy:
	@test -n "$(SERVICE)" -a -n "$(ENV)" || { echo "usage: make deploy SERVICE=<stage|shared> ENV=<env>"; exit 2; }
	terraform/deploy.sh $(SERVICE) $(ENV) apply

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) dist dqad-demo .pytest_cache
