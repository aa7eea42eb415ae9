# lofi_pipeline. `make all` and `make test` set everything up themselves: `make all` the system
# packages a run needs (FluidSynth, the GM SoundFont) and a virtual environment; `make test`
# adds Chromium (the report test), the optional Ray extra and what its cluster tests use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOFI := $(BIN)/lofi
ARCHIVE ?=
PROFILE ?=
ARGS := $(if $(ARCHIVE),--archive "$(ARCHIVE)") $(if $(PROFILE),--profile $(PROFILE)) $(LOFI_ARGS)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
SF2 := /usr/share/sounds/sf2/FluidR3_GM.sf2
DATASET := $(if $(ARCHIVE),,dataset/default.zip)
STAGES := intake extract encode train generate drums arrange render master stems export

.PHONY: serve all test setup system system-test venv ray soundfont dataset status clean report bench bench-scale base base-drums $(STAGES)

all: setup $(DATASET)
	$(LOFI) all $(ARGS)

# Two pytest workers, a test file each at a time: half the suite waits on subprocesses, browsers
# and a Ray cluster, so two share two cores (20.6 -> 13.7 minutes here); a file's tests share its
# fixtures and never run beside each other (the Ray tests' cluster, the server's run).
test: setup system-test ray
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

$(STAGES): setup $(DATASET)
	$(LOFI) $@ $(ARGS)

# The web app on http://127.0.0.1:8765/ (PORT=... for another port).
serve: setup
	$(BIN)/pip install -q -e '.[serve]'
	$(LOFI) serve $(if $(PORT),--port $(PORT)) $(LOFI_ARGS)

status report: setup
	$(LOFI) $@ $(ARGS)

clean: venv
	$(LOFI) clean $(ARGS)

setup: system venv soundfont

# What a run needs (make all) and what only the tests add (make test), each installed when missing.
RUN_PACKAGES := fluidsynth:fluidsynth fluid-soundfont-gm:$(SF2)
TEST_PACKAGES := chromium:chromium chromium-driver:chromedriver

system:
	@$(call apt_missing,$(RUN_PACKAGES))

system-test: system
	@$(call apt_missing,$(TEST_PACKAGES))

# $(1): package:program-or-file pairs; installs the packages whose program or file is missing.
define apt_missing
missing=""; \
for pair in $(1); do \
	pkg=$${pair%%:*}; what=$${pair#*:}; \
	if [ "$${what#/}" != "$$what" ]; then [ -e "$$what" ] || missing="$$missing $$pkg"; \
	else command -v "$$what" >/dev/null || missing="$$missing $$pkg"; fi; \
done; \
if [ -n "$$missing" ]; then \
	echo "installing system packages:$$missing"; \
	$(SUDO) apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
fi
endef

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

# What only the tests use: pytest and friends, and Ray (optional for a run: `make all` does not
# need it), whose tests start a cluster in a network namespace of their own (unshare, ip).
ray: $(VENV)/.tested
	@command -v unshare >/dev/null && command -v ip >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends util-linux iproute2; }

$(VENV)/.tested: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,ray,serve]'
	touch $@

soundfont: system
	@[ -e soundfonts/default.sf2 ] || ln -sf $(SF2) soundfonts/default.sf2

# Pre-train the shipped base ensemble again (src/lofi_pipeline/model/base_ensemble): needed after a
# change to the token format or the members' code; about 33 minutes on two cores (docs/model.md).
base: setup
	$(LOFI) base $(LOFI_ARGS)
	$(LOFI) base-drums $(LOFI_ARGS)

# Pre-train the shipped base drum model again (src/lofi_pipeline/model/base_drums) on the vendored
# Groove MIDI Dataset: needed after a change to the drum format or the drum members; about 6 minutes.
base-drums: setup
	$(LOFI) base-drums $(LOFI_ARGS)

dataset: dataset/default.zip

dataset/default.zip: | venv
	$(LOFI) dataset --out $@

# Local processes against a two-node Ray cluster on this machine (in a network namespace: root).
bench-scale: setup ray $(DATASET)
	$(BIN)/python benchmarks/bench_scale.py

bench: setup $(DATASET)
	$(LOFI) train $(ARGS)
	@command -v ffmpeg >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends ffmpeg; }
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python benchmarks/bench_extract.py dataset/default.zip $(wildcard ../shared/data/pop909_first100.zip)
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_audio.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_radio.py --default-outputs outputs
