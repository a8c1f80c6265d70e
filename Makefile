# Piano Buddy: `make run` plays the box, `make test` installs what the tests need and runs them.
# Run `make` alone for the list of targets.

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
TRAIN_VENV  ?= .venv-train
TRAIN_PY    := $(TRAIN_VENV)/bin/python
TFLR_VENV   ?= .venv-tflr
# System packages for running: alsa-lib headers (pyalsaaudio builds from source), alsa-utils;
# g++ and pkg-config build python-rtmidi (with ALSA) where no wheel fits (Python 3.13 on arm64),
# swig builds lgpio there.
SYSTEM_PACKAGES ?= gcc g++ pkg-config swig python3-dev python3-venv libasound2-dev alsa-utils
# ... and for the tests: JACK's dummy backend and the ALSA jack plugin (real-time pacing),
# systemd-analyze for the unit checks, shellcheck for the install script, and a sampled piano
# (FluidR3 GM in FluidSynth) that the voice is compared with (make voice-report too; the box
# never needs it).
TEST_SYSTEM_PACKAGES ?= jackd2 libasound2-plugins libjack-jackd2-0 systemd shellcheck \
                        fluidsynth fluid-soundfont-gm rt-tests
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
# Install, uninstall and the emulated-Pi check live in mk/install.mk; the fleet's Ansible
# checks (and their venv, which `make test` also builds) in mk/fleet.mk.
-include mk/*.mk
.PHONY: help run demo test test-fast bench soak models eval install uninstall pi-check \
        system-deps test-system-deps venv test-venv train-venv tflr-venv clean voice-report

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

# $(call apt_install,PACKAGES): install the Debian packages missing from PACKAGES.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then \
	    echo "Please run as root: apt-get install -y$$missing" >&2; exit 1; fi; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

system-deps:  ## install the Debian packages the firmware needs (apt-get, root or sudo)
	$(call apt_install,$(SYSTEM_PACKAGES))

test-system-deps: system-deps
	$(call apt_install,$(TEST_SYSTEM_PACKAGES))

# The venv for running: the firmware, matplotlib for the demo's piano roll, and on a Pi (a GPIO
# chip present) lgpio, gpiozero's pin driver there. The tests add pytest (.stamp-test).
EXTRAS := plot$(shell [ -e /dev/gpiochip0 ] && echo ,pi)
$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp
	$(PY) -m pip install -q -e '.[$(EXTRAS),test]'
	touch $@

venv: system-deps $(VENV)/.stamp  ## the firmware's virtual environment (.venv; commands in .venv/bin)

test-venv: test-system-deps $(VENV)/.stamp-test

$(TRAIN_VENV)/.stamp: models_tflite/training/requirements.txt
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_PY) -m pip install -q --upgrade pip
	$(TRAIN_PY) -m pip install -q -r models_tflite/training/requirements.txt
	$(TRAIN_PY) -m pip install -q --no-deps -e .
	touch $@

train-venv: $(TRAIN_VENV)/.stamp  ## the training environment (TensorFlow CPU, music21; ~1.6 GB)

# tflite-runtime 2.14 has wheels for Python <= 3.11 only and needs numpy < 2.
$(TFLR_VENV)/.stamp: pyproject.toml
	@if $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] > (3, 11))'; then \
	  $(PYTHON) -m venv $(TFLR_VENV) && \
	  $(TFLR_VENV)/bin/pip install -q 'tflite-runtime==2.14.0' 'numpy<2' && \
	  $(TFLR_VENV)/bin/pip install -q --no-deps -e . && touch $@; \
	else echo "Python > 3.11: no tflite-runtime wheel; testing ai-edge-litert only"; mkdir -p $(TFLR_VENV); touch $@; fi

tflr-venv: $(TFLR_VENV)/.stamp

# ai-edge-litert on Python 3.13 (Raspberry Pi OS Trixie), when this machine has a python3.13.
PY313_VENV ?= .venv-py313
PYTHON313 ?= $(firstword $(foreach p,python3.13 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13),\
               $(shell $(p) -c 'import sys; print("$(p)")' 2>/dev/null)))
$(PY313_VENV)/.stamp: pyproject.toml
	@if [ -n "$(PYTHON313)" ]; then \
	  $(PYTHON313) -m venv $(PY313_VENV) && \
	  $(PY313_VENV)/bin/pip install -q 'ai-edge-litert>=2.0' numpy && \
	  $(PY313_VENV)/bin/pip install -q --no-deps -e . && touch $@; \
	else echo "no python3.13 here: ai-edge-litert is tested on $$($(PYTHON) --version) only"; \
	  mkdir -p $(PY313_VENV); touch $@; fi

py313-venv: $(PY313_VENV)/.stamp

run: venv  ## play the box (desktop simulator without GPIO; a demo without a terminal)
	$(PY) -m piano_buddy run

demo: venv  ## the scripted demo: writes out/duet.wav, out/duet.mid, out/duet.png
	$(PY) -m piano_buddy demo --out out

test: test-venv tflr-venv py313-venv train-venv ansible-venv  ## install what the tests need (also the 1.6 GB training venv) and run them all
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: test-venv  ## every test but the slow ones, without building the training venv
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

voice-report: test-venv  ## our synth beside a sampled piano (FluidR3): table, PNGs and an A/B WAV in out/
	$(PY) -m bench.voice_report --out out

bench: test-venv  ## measure every timing target; a table, one summary line, out/bench.json; fails on a miss
	$(PY) -m bench --json out/bench.json $(BENCH_ARGS)

models: train-venv  ## train both models from the music21 corpus and export the .tflite files
	$(TRAIN_PY) -m models_tflite.training.build

eval: train-venv  ## print the metric tables of the committed models (and of the harmonizer)
	$(TRAIN_PY) -m models_tflite.training.evaluate
	$(TRAIN_PY) -m models_tflite.training.harmony_eval

clean:  ## remove build output (keeps the virtual environments)
	rm -rf build out .pytest_cache

soak: test-venv  ## a compressed museum day through the real firmware: make soak MINUTES=N
	$(PY) -m bench.soak --minutes $(or $(MINUTES),5)
