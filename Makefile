# The two commands: `make run` and `make test`. Both set up .venv/ first, from nothing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: run test lint setup chromium bench bench-stack bench-queue bench-audit bench-stats clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) is required (Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Headless Chromium for the browser tests, from Debian's packages (Playwright's own browser download is not used).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else echo "error: install Debian's chromium package (sudo apt-get install chromium) for the browser tests"; exit 1; fi; }

run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap_demo
	PORT=$(PORT) $(PY) manage.py run_stack

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

test: $(STAMP) chromium lint
	$(VENV)/bin/pytest

bench: $(STAMP)
	$(PY) -m ml.bench --json

# The whole stack (upload over HTTP to a stored result) next to the bare model pipeline; prints JSON.
bench-stack: $(STAMP)
	$(PY) benchmarks/stack.py

# Render time of the clinicians' review queue with 50,000 cases; prints JSON.
bench-queue: $(STAMP)
	$(PY) benchmarks/review_queue.py

# Audit trail: added ms per request for the audit write, and audit_verify over 1,000,000 entries; prints JSON.
bench-audit: $(STAMP)
	$(PY) benchmarks/audit.py

# GET /api/v1/stats over 50,000 cases, most of them graded: time and query count; prints JSON.
bench-stats: $(STAMP)
	$(PY) benchmarks/stats.py

clean:
	rm -rf $(VENV) var/
