# zip_d2 — every target does its own set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.zip_d2-setup-done
# Synthetic data and demo outputs live here (git-ignored).
WORK ?= work
# Extra arguments for a target's main tool: ARGS (its flags) and OPTS (KEY VALUE config
# overrides, after them), e.g. make demo OPTS="PSEUDO.SAM.CHECKPOINT /data/sam_vit_h_4b8939.pth"
ARGS ?=
OPTS ?=

.PHONY: setup lint test demo smoke train-synthetic chain experiments gpu-wheels clean

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

# Lint settings: .ruff.toml (line length 100, import order as detectron2's).
lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q tests

# The pseudo-label job with the paper's models (CLIP ViT-B/16 + RN50x64, SAM ViT-H) on the demo
# images. Downloads the weights once (about 5.7 GB); without network it stops within seconds with
# one line per missing model: the config key that provides it and where a download is kept
# (README: ZIP_D2_OFFLINE).
demo: setup
	$(PY) tools/generate_pseudo_labels.py --images datasets/demo/images \
		--config configs/pseudo/zip_paper.yaml --out $(WORK)/demo/labels.json $(ARGS) $(OPTS) \
	|| { rc=$$?; [ $$rc -ne 2 ] || echo 'make demo: pass keys as make demo OPTS="PSEUDO.SAM.CHECKPOINT' \
		'/path/sam_vit_h_4b8939.pth ..."; `make smoke` checks the machinery without weights' >&2; \
		exit $$rc; }
	$(PY) tools/visualize_pseudo_labels.py $(WORK)/demo/labels.json --out-dir $(WORK)/demo/vis --num 5

# The same job with tiny RANDOM-weight models: checks the machinery, not the labels.
smoke: setup
	$(PY) tools/generate_pseudo_labels.py --images datasets/demo/images \
		--config configs/pseudo/tiny_random.yaml --out $(WORK)/smoke/labels.json --overwrite \
		$(ARGS) $(OPTS)
	$(PY) tools/validate_pseudo_labels.py $(WORK)/smoke/labels.json
	$(PY) tools/visualize_pseudo_labels.py $(WORK)/smoke/labels.json --out-dir $(WORK)/smoke/vis --num 5

# Mask R-CNN trained from scratch on synthetic scenes on the CPU, evaluated with box/mask AP.
# Two processes x one thread: as fast as one process x two threads on an idle 2-core machine,
# several times faster when other jobs load it (README). ARGS="--num-gpus 1" for one process.
$(WORK)/synthetic/val.json: | setup
	$(PY) tools/make_synthetic_dataset.py --out $(WORK)/synthetic --num-train 400 --num-val 60 \
		--seed 0 --overwrite

train-synthetic: setup $(WORK)/synthetic/val.json
	$(PY) tools/train_net.py --num-gpus 2 --dist-url auto $(ARGS) \
		--config-file configs/synthetic/mask_rcnn_R18_synthetic.yaml \
		--register-dataset synthetic_train $(WORK)/synthetic/train.json $(WORK)/synthetic/train \
		--register-dataset synthetic_val $(WORK)/synthetic/val.json $(WORK)/synthetic/val \
		OUTPUT_DIR $(WORK)/train_synthetic $(OPTS)

# The whole chain offline on synthetic shapes, every step timed (tools/whole_chain.sh; README
# "The whole chain on this machine"). Sizes as make variables: make chain TRAIN_ITERS=100;
# OPTS go to every training and evaluation step.
chain: setup
	PY=$(PY) WORK=$(WORK)/chain OPTS="$(OPTS)" bash tools/whole_chain.sh

# Every experiment of docs/EXPERIMENTS_RESULTS.md (about 3.5 CPU hours), then its tables and
# figures from the run records (tools/experiments/run_all.sh). A finished run's record is never
# redone: to reproduce from scratch, give a new folder, make experiments RECORDS=work/my_records,
# and `git diff docs/` shows every number that moved.
RECORDS ?= docs/experiments/records
experiments: setup
	PY=$(PY) ROOT=$(WORK)/exp23 RECORDS=$(RECORDS) bash tools/experiments/run_all.sh

# Wheels for the prepared GPU check on a machine without network (tools/bench/gpu_check.sh).
gpu-wheels: setup
	PYTHON=$(PY) bash tools/bench/gpu_check.sh prepare

clean:
	rm -rf $(WORK)
