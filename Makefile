# Two entry points for users (see README): `make demo` and `make test`.
# Both create .venv when missing, install the pinned Python requirements (skipped when the
# requirement files are unchanged since the last successful install) and the Debian system
# libraries that Open3D, Qt and the GUI tests need (installed when root, printed otherwise).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
STAMP := $(VENV)/.requirements.sha256
APT_PACKAGES := libusb-1.0-0 libgl1 libegl1 mesa-vulkan-drivers libgl1-mesa-dri xvfb \
	libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 \
	libxcb-render-util0 libxcb-shape0 libxcb-randr0 libxcb-xkb1 libxcb-xinerama0 \
	libfontconfig1 libdbus-1-3
ARGS ?=
PYTEST_ARGS ?=

.PHONY: help demo test setup system-deps python-deps doctor gpu-prep gpu-smoke gpu-run

help:
	@echo "make demo   - set up everything, then launch the demo (ARGS='...' passes options to run_demo.py)"
	@echo "make test   - set up everything, then run the whole test suite (PYTEST_ARGS='...')"
	@echo "make doctor - set up everything, then print the pre-flight check table"
	@echo "make gpu-prep  - cache MediaPipe landmarks of the real clip (and copy it) into .gpu_carry/ for a GPU run"
	@echo "make gpu-smoke - the GPU command end to end on this CPU with tiny sizes (runs/gpu_smoke/)"
	@echo "make gpu-run OUT=dir - on a CUDA machine (its python3, no venv): train, evaluate, export, time (docs/gpu_run.md)"

demo: setup
	$(PY) run_demo.py $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

doctor: setup
	$(PY) run_demo.py doctor

setup: system-deps python-deps

system-deps:
	@if ! command -v dpkg >/dev/null 2>&1; then \
		echo "setup: not a Debian/Ubuntu system; install the equivalents of: $(APT_PACKAGES)"; exit 0; fi; \
	missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = "0" ]; then \
		echo "setup: installing system libraries:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "setup: missing system libraries; run as root:"; \
		echo "  sudo apt-get update && sudo apt-get install -y$$missing"; \
	fi

python-deps:
	@if [ ! -x "$(PY)" ]; then \
		"$(PYTHON)" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'; \
		echo "setup: creating $(VENV) with $(PYTHON)"; "$(PYTHON)" -m venv "$(VENV)"; fi; \
	want=$$(cat requirements.txt requirements-test.txt | sha256sum | cut -d' ' -f1); \
	if [ -f "$(STAMP)" ] && [ "$$(cat $(STAMP))" = "$$want" ]; then exit 0; fi; \
	echo "setup: installing Python requirements into $(VENV) (a few minutes the first time)"; \
	"$(PY)" -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-test.txt; \
	echo "$$want" > "$(STAMP)"

# GPU runs (docs/gpu_run.md). gpu-prep needs MediaPipe (this machine); gpu-run uses the CUDA machine's python3.
GPU_CLIP ?= ../shared/real/open_palm_640x360.mp4
GPU_PYTHON ?= python3
OUT ?= runs/gpu_out

gpu-prep: setup
	$(PY) -m app.landmark_cache record --source $(GPU_CLIP) --out .gpu_carry/$(basename $(notdir $(GPU_CLIP))).landmarks.jsonl --copy-video

gpu-smoke: setup
	$(PY) -m training.gpu_run --smoke --out runs/gpu_smoke --force $(ARGS)

gpu-run:
	PYTHONUNBUFFERED=1 $(GPU_PYTHON) -m training.gpu_run --out $(OUT) $(ARGS)
