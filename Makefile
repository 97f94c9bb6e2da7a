# `make test` and `make serve` create .venv when absent and install everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT := $(if $(filter 0,$(shell id -u)),,sudo )apt-get
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test serve lint clean prometheus chromium

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, pinned to the CPU wheel: an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: $(STAMP) prometheus chromium
	$(BIN)/python -m pytest -q

# The monitoring test scrapes a live server with a real Prometheus: the Debian package's binary.
prometheus:
	@command -v prometheus >/dev/null || { $(APT) install -y -q prometheus || { $(APT) update -q && $(APT) install -y -q prometheus; }; } >/dev/null

# The docs pages are tested in a real browser: Debian's chromium, driven through chromium-driver.
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { $(APT) install -y -q chromium chromium-driver || { $(APT) update -q && $(APT) install -y -q chromium chromium-driver; }; } >/dev/null

serve: $(STAMP)
	$(BIN)/rebq-serve serve --state-dir ./state

lint: $(STAMP)
	$(BIN)/ruff check model serving updater benchmarks tests

clean:
	rm -rf $(VENV) .pytest_cache
