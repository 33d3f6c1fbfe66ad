# Two entry points: `make run` (install + launch with real weights) and `make test` (install + whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and explicitly so pip takes the wanted build (override for your platform).
TORCH ?= torch==2.14.1 torchvision==0.29.1
ARGS ?=

.PHONY: run test install install-test browser lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,yolo,gemini,mcp,engines]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test browser

# Debian's Chromium drives the browser tests (Playwright's own browser download does not work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

run: install
	$(BIN)/python app.py $(ARGS)

# The Ray Serve tests run in a pytest process of their own: a Ray driver changes process-wide state
# (signal handlers, threads) that the rest of the suite should not inherit.
test: install-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not ray" $(PYTEST_ARGS)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m ray $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: none selected

lint: install-test
	$(BIN)/pip install --quiet ruff && $(BIN)/ruff check .
