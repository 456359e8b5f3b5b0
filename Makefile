# One command each: run the demo, test, lint, benchmark. Each bootstraps its venv.
PYTHON ?= python3
PY312 ?= $(shell scripts/find-python 3.12)
VENV ?= .venv
VENV312 ?= .venv312
VENVDOCS ?= .venvdocs
VENVOLD ?= .venvold
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

REQS := requirements/base.txt requirements/dev.txt pyproject.toml

JS := clients/js

PHONY_EXTRA := run-uvicorn run-fastapi js-build test-js
.PHONY: help install run $(PHONY_EXTRA) test test-fast test-py312 test-oldest lint format bench soak docs clean

help:
	@echo "make run        run the demo project (Daphne) on http://$(HOST):$(PORT)/"
	@echo "make run-uvicorn  the same project under uvicorn"
	@echo "make run-fastapi  the FastAPI twin of the demo under uvicorn"
	@echo "make test       run the whole test suite (starts Redis if none answers)"
	@echo "make test-fast  run the quick unit subset (no server processes)"
	@echo "make test-py312 run the suite on Python 3.12 with the newest Django"
	@echo "make test-oldest run the suite on the oldest versions requirements allow"
	@echo "make lint       ruff (lint + format check), mypy --strict, lint-imports"
	@echo "make bench      run the benchmarks in bench/"
	@echo "make soak       the soak and chaos run (MINUTES=10 by default)"
	@echo "make docs       build the documentation site (mkdocs --strict) into build/site"
	@echo "make js-build   generate the script-tag client (static/svc_infra/websocket.js) from $(JS)/src"
	@echo "make test-js    the browser client's tests in Node (node --test) and its TypeScript examples"

$(VENV)/.installed: $(REQS)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements/dev.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENV312)/.installed: $(REQS)
	@test -n "$(PY312)" || { echo "Python 3.12 not found (set PY312=/path/to/python3.12)"; exit 1; }
	$(PY312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install --quiet --upgrade pip
	$(VENV312)/bin/python -m pip install --quiet --upgrade -r requirements/dev.txt
	$(VENV312)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

# The oldest versions base.txt allows (requirements/oldest.txt).
$(VENVOLD)/.installed: $(REQS) requirements/oldest.txt
	$(PYTHON) -m venv $(VENVOLD)
	$(VENVOLD)/bin/python -m pip install --quiet --upgrade pip
	$(VENVOLD)/bin/python -m pip install --quiet -r requirements/oldest.txt -r requirements/dev.txt
	$(VENVOLD)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENVDOCS)/.installed: requirements/docs.txt
	$(PYTHON) -m venv $(VENVDOCS)
	$(VENVDOCS)/bin/python -m pip install --quiet --upgrade pip
	$(VENVDOCS)/bin/python -m pip install --quiet -r requirements/docs.txt
	touch $@

install: $(VENV)/.installed

# The browser client (clients/js, npm package @svc-infra/websocket): its dev
# dependencies (ws, typescript) from the committed lockfile; the tests need no network.
$(JS)/node_modules/.installed: $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# No dependencies needed: the build is one Node script.
js-build:
	node $(JS)/scripts/build.mjs

# Includes the check that the generated script is up to date (else: make js-build).
test-js: $(JS)/node_modules/.installed
	cd $(JS) && npm test --silent && npm run --silent typecheck

run: $(VENV)/.installed
	@echo "Demo: http://$(HOST):$(PORT)/?token=$$($(VENV)/bin/python manage.py ws_token demo --scopes notify:send --ttl 86400)"
	@echo "(another user: .venv/bin/python manage.py ws_token <name>)"
	$(VENV)/bin/python manage.py migrate --noinput --verbosity 0
	$(VENV)/bin/python manage.py runserver $(HOST):$(PORT)

# The WebSocket settings docs/deployment.md recommends: the sans-I/O implementation,
# and browsers' permessage-deflate offers declined (measured: 3.9-6.4x the CPU per
# delivery and 2.1-4.2x the memory per connection with it).
UVICORN_WS := --ws websockets-sansio --ws-per-message-deflate false

run-uvicorn: $(VENV)/.installed
	$(VENV)/bin/python manage.py migrate --noinput --verbosity 0
	$(VENV)/bin/python -m uvicorn project.asgi:application $(UVICORN_WS) --host $(HOST) --port $(PORT)

run-fastapi: $(VENV)/.installed
	$(VENV)/bin/python -m uvicorn project.fastapi_app:app $(UVICORN_WS) --host $(HOST) --port $(PORT)

test: $(VENV)/.installed
	@scripts/ensure-chromium
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not e2e" -q $(PYTEST_ARGS)

test-py312: $(VENV312)/.installed
	$(VENV312)/bin/python -m pytest -q $(PYTEST_ARGS)

test-oldest: $(VENVOLD)/.installed
	$(VENVOLD)/bin/python -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

$(VENV)/.bench-installed: $(VENV)/.installed requirements/bench.txt
	$(VENV)/bin/python -m pip install --quiet -r requirements/bench.txt
	touch $@

bench: $(VENV)/.bench-installed
	$(VENV)/bin/python -m bench

soak: $(VENV)/.bench-installed
	$(VENV)/bin/python -m bench.soak --minutes $(or $(MINUTES),10)

docs: $(VENVDOCS)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENVDOCS)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) $(VENV312) $(VENVOLD) $(VENVDOCS) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	rm -rf $(JS)/node_modules $(JS)/*.tgz
