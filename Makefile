# zip_d2 — every target does its own set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.zip_d2-setup-done
# Synthetic data and demo outputs live here (git-ignored).
WORK ?= work

.PHONY: setup test demo smoke bench clean

setup: $(STAMP)

# Re-run only when the install recipe changes; each step is itself idempotent.
$(STAMP): setup.py tools/install_detectron2.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 'setuptools<81' wheel
	# torch/torchvision pinned to the pair that installs from local disk here (no multi-GB download).
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PY) tools/install_detectron2.py
	$(PIP) install -q --no-build-isolation -e '.[dev]'
	touch $@

test: setup
	$(PY) -m pytest -q tests

demo: setup
	$(PY) tools/make_synthetic_dataset.py --out $(WORK)/synthetic --num-train 400 --num-val 60 --seed 0
	$(PY) tools/train_net.py --config-file configs/synthetic/mask_rcnn_R18_synthetic.yaml \
		OUTPUT_DIR $(WORK)/demo_train

clean:
	rm -rf $(WORK)
