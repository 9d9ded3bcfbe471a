#!/usr/bin/env bash
# The prepared GPU check (tools/bench/gpu_check.py) for a machine with one GPU, Python 3.12 and torch
# preinstalled, and no network; plus the step that prepares its wheels where PyPI is reachable.
#
#   bash tools/bench/gpu_check.sh prepare   # here: the wheels zip_d2 needs there, into .whl/
#                                     # (git-ignored, ~4 MiB), then checked (tags, one version
#                                     # each, every requirement carried or in the GPU image)
#   bash tools/bench/gpu_check.sh [ARGS]    # there: installs .whl/ into a scratch folder (pip
#                                     # --no-index --target), runs the check within 8 minutes,
#                                     # writes gpu_check.json and gpu_check.md to $OUT (or
#                                     # work/gpu_check); ARGS go to tools/bench/gpu_check.py
#
# What travels: the repository (zip_d2 runs from it through PYTHONPATH) and .whl/. The wheels
# are pinned to the versions the CPU test suite runs with; detectron2 is the pure-Python wheel
# tools/install_detectron2.py builds from the registry's sal-detectron2 (no compiled _C: RoIAlign
# and NMS come from torchvision).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
WHEELS=${WHEELS:-.whl}

case "${1:-}" in
  prepare)
    PY=${PYTHON:-.venv/bin/python}
    rm -rf "$WHEELS"
    mkdir -p "$WHEELS"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$WHEELS" \
      pycocotools==2.0.11 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 \
      segment-anything==1.0 yacs==0.1.8 omegaconf==2.3.1 hydra-core==1.3.8 termcolor==3.3.0 \
      iopath==0.1.9
    # Published as source only; pure Python, so built here into py3-none-any wheels.
    "$PY" -m pip wheel -q --no-deps -w "$WHEELS" fvcore==0.1.5.post20221221 \
      antlr4-python3-runtime==4.9.3
    "$PY" tools/install_detectron2.py --wheel-dir "$WHEELS"
    PYTHONPATH="$PWD" "$PY" tools/bench/gpu_check.py --check-wheels "$WHEELS"
    ;;
  -h|--help|help)
    sed -n '2,17p' "$0"
    ;;
  *)
    PY=${PYTHON:-python3}
    SITE=${SITE:-/tmp/zip_d2_site}
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
      echo "gpu_check.sh: no wheels in $WHEELS: run 'bash tools/bench/gpu_check.sh prepare' where PyPI" \
        "is reachable and carry $WHEELS along" >&2
      exit 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    # 8 minutes in all: the check skips what no longer fits its budget, and the hard limit
    # keeps a hung run from eating the machine's time (the report is written section by section).
    timeout 450 "$PY" tools/bench/gpu_check.py --out-dir "${OUT:-work/gpu_check}" --budget-s 420 "$@"
    ;;
esac
