# Two entry points for a fresh machine: `make demo` and `make test`.
# Both install from requirements/lock.txt (pinned versions; `make lock` regenerates it):
# the demo only the runtime, the tests the `dev` extra as well.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
LOCK    := requirements/lock.txt
PIP     := $(BIN)/python -m pip --disable-pip-version-check
RUNTIME := $(VENV)/.installed-runtime
DEV     := $(VENV)/.installed-dev
PYTEST_ARGS ?= -n 2

.PHONY: demo test install install-dev lint typecheck postgres bench lock test-newest clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# The runtime (what the CLI, the server and the demo need) through uv, pinned by the lock like
# uv itself: about 30 s on a fresh clone instead of 2 minutes; pip if uv cannot be had.
$(RUNTIME): pyproject.toml $(LOCK) | $(BIN)/python
	@echo "installing the runtime pinned by $(LOCK) into $(VENV)"
	( $(PIP) install --quiet --quiet -c $(LOCK) uv && \
	  $(BIN)/uv pip install --quiet --python $(BIN)/python -c $(LOCK) -e . ) || \
	$(PIP) install --quiet --quiet -c $(LOCK) -e .
	touch $(RUNTIME)

# The dev extra through pip, which reads this machine's pip configuration (PyTorch's CPU build
# comes from the local wheel folder; the lock pins it, never a CUDA build).
$(DEV): pyproject.toml $(LOCK) | $(BIN)/python
	@echo "installing the runtime and the dev extra pinned by $(LOCK) into $(VENV)"
	$(PIP) install --quiet --quiet --upgrade pip
	$(PIP) install --quiet --quiet -c $(LOCK) -e '.[dev]'
	touch $(DEV) $(RUNTIME)

install: $(RUNTIME)

install-dev: $(DEV)

# Start the local PostgreSQL cluster if it is not accepting connections (CI machines have it installed).
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || \
	  (pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start && sleep 2 && pg_isready -h 127.0.0.1 -p 5432)

demo: $(RUNTIME)
	$(BIN)/chainproof demo

test: $(DEV) postgres
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/mypy

typecheck: $(DEV)
	$(BIN)/mypy

# Re-resolve the newest versions pyproject.toml allows (and uv) and pin them in the lock.
lock:
	PY=$(PY) .ci/lock

# The suite against the newest versions pyproject.toml allows (not the lock), in .venv/newest:
# breakage from a new upstream release shows here before users see it.
test-newest: postgres
	PY=$(PY) .ci/test-newest $(PYTEST_ARGS)

bench: $(DEV)
	@echo "each benchmark is one command; see benchmarks/README.md"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
