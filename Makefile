# textwatch: the two commands are `make run` and `make test` (see README.md).
# Both install what they need on Debian 12 (apt packages, .venv, the package)
# and are quick when everything is already there.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SHARED := ../shared
# torch is an optional extra (training, the torch backend); this pinned CPU build is on
# the project's machines' disk, an unpinned one would download a multi-GB CUDA build.
TORCH := torch==2.13.0

# chromium + chromium-driver: the browser test of `textwatch view` (tests/daemon/test_view.py).
APT_PACKAGES := tesseract-ocr tesseract-ocr-eng ffmpeg \
	fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf fonts-urw-base35 \
	fonts-crosextra-carlito fonts-crosextra-caladea fonts-roboto fonts-open-sans fonts-lato \
	fonts-inconsolata fonts-cantarell fonts-noto-mono \
	python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools gstreamer1.0-libav \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly \
	systemd chromium chromium-driver mosquitto openssl

.PHONY: run image test test-fast deps apt config clean

# The daemon on the embedded default: config/textwatch.toml plays the bundled sample
# video (daemon/textwatch/data/sample.mp4, looped) through the shipped detector; a
# subscriber prints what is published. Ctrl-C stops both (the daemon in stages).
# The daemon's own log goes to build/textwatch.log.
run: deps
	@mkdir -p build
	@$(VENV)/bin/textwatch check -c config/textwatch.toml
	@echo "== textwatch run -c config/textwatch.toml  (log: build/textwatch.log; Ctrl-C stops)"
	@$(VENV)/bin/textwatch run -c config/textwatch.toml 2>build/textwatch.log & daemon=$$!; \
	trap 'kill -TERM $$daemon 2>/dev/null; wait $$daemon' INT TERM EXIT; \
	$(VENV)/bin/textwatch subscribe -c config/textwatch.toml --topic text. --topic event.

# The one-shot path on a rendered window and, where ../shared is present, the seed's image.
image: deps
	@mkdir -p build
	$(PY) -m textwatch.tools.samples --out build/sample.png
	$(VENV)/bin/textwatch image build/sample.png
	@if [ -f $(SHARED)/seed/TestingImage.jpg ]; then \
		echo "== textwatch image $(SHARED)/seed/TestingImage.jpg"; \
		$(VENV)/bin/textwatch image $(SHARED)/seed/TestingImage.jpg; \
	fi

# Everything: tests/unit, tests/process (real processes and sockets) and tests/daemon (whole daemons).
# Two test files at a time (pytest-xdist, a file stays on one worker so its module fixtures and
# order hold): much of a daemon test is waiting, so two halve the wall time on 2 cores (453 s
# against 978 s for the whole suite on the 2-core VM); at most 4 where there are more cores.
test: deps
	$(PY) -m pytest -q -n auto --maxprocesses=4 --dist loadfile --durations=15

# Only tests/unit: pure functions and classes in one process, no daemon, no real socket pair.
test-fast: deps
	$(PY) -m pytest -q tests/unit

deps: apt $(VENV)/.installed

# Installs only what is missing; `dpkg -s` on all packages takes well under a second.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt: installing $$missing"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test,torch]'
	@touch $@

# Regenerate the commented default config from the schema.
config: $(VENV)/.installed
	$(PY) -m textwatch.config > config/textwatch.toml

clean:
	rm -rf build .pytest_cache
