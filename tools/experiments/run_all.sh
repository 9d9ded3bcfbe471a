#!/bin/bash
# Every experiment of docs/EXPERIMENTS_RESULTS.md from scratch, then the document's tables and
# figures from the records: `make experiments` (about 3.5 CPU hours on 2 cores; the records of
# each finished run are kept, so rerunning continues an interrupted matrix).
# Two lanes, one torch thread each: experiment 1 then 3 (3 starts from 1's detectors), and
# experiment 2 then 4. Logs: $ROOT/e{1,2,3,4}.log.
#   ROOT     data, labels, checkpoints (default work/exp23)
#   RECORDS  the run records (default docs/experiments/records, tracked)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
ROOT=${ROOT:-work/exp23}
RECORDS=${RECORDS:-docs/experiments/records}
export OMP_NUM_THREADS=1
mkdir -p "$ROOT"
run() {
    echo "[$(date -u +%H:%M:%S)] experiment $1: tools/experiments/$2 (log $ROOT/$1.log)"
    $PY "tools/experiments/$2" --root "$ROOT" --records "$RECORDS" --threads 1 \
        > "$ROOT/$1.log" 2>&1 || { echo "experiment $1 failed: see $ROOT/$1.log" >&2; return 1; }
}
# Both lanes read ROOT/data: make it before they start.
$PY -c "import sys; sys.path.insert(0, 'tools/experiments'); import common; common.make_data('$ROOT')"
(run e1 annotation_free.py && run e3 label_efficient.py) & lane_a=$!
(run e2 self_training.py && run e4 open_vocab_synthetic.py) & lane_b=$!
status=0
wait $lane_a || status=1
wait $lane_b || status=1
[ $status -eq 0 ] || exit $status
$PY tools/experiments/report.py --records "$RECORDS" --write --figures docs/figures
$PY tools/experiments/report.py --records "$RECORDS" --check
