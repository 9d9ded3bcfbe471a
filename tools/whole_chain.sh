#!/usr/bin/env bash
# The whole zip_d2 chain on a CPU-only machine, without weights or network, on synthetic shapes:
# data -> pseudo-labels -> validate / visualize / eval -> train -> eval-only -> OV eval ->
# self-train 1 round -> 10 % subset finetune -> demo on an image and a video.
# Every step prints its command and its wall time; `make chain` runs this script (README:
# "The whole chain on this machine"), tests/test_whole_chain.py runs it with tiny sizes.
#
# Settings (environment; defaults in brackets):
#   PY [.venv/bin/python]  WORK [work/chain]  NUM_TRAIN [40]  NUM_VAL [10]
#   TRAIN_ITERS [100]  SELF_TRAIN_ITERS [30]  FINETUNE_ITERS [30]  LABEL_IMAGES [4]
#   LAUNCH ["--num-gpus 2 --dist-url auto": 2 CPU processes x 1 thread, the fastest on a
#           loaded 2-core machine; "" for one process]
#   OPTS  [""]: extra KEY VALUE overrides for every training / evaluation step
#   SHOW_LINES [4]: lines of each step's output shown (all of it is in WORK/logs/)
# Labels: the tiny RANDOM-weight preset labels LABEL_IMAGES images to show the real job (noise);
# the detector trains on discovery-made labels (zip_d2's k-means and discovery on CONSTRUCTED
# features, no CLIP/SAM). Numbers here check the machinery, not Zip's accuracy.
set -euo pipefail

PY=${PY:-.venv/bin/python}
WORK=${WORK:-work/chain}
NUM_TRAIN=${NUM_TRAIN:-40}
NUM_VAL=${NUM_VAL:-10}
TRAIN_ITERS=${TRAIN_ITERS:-100}
SELF_TRAIN_ITERS=${SELF_TRAIN_ITERS:-30}
FINETUNE_ITERS=${FINETUNE_ITERS:-30}
LABEL_IMAGES=${LABEL_IMAGES:-4}
LAUNCH=${LAUNCH---num-gpus 2 --dist-url auto}
OPTS=${OPTS:-}

OV=configs/open_vocab/mask_rcnn_R18_ov_synthetic.yaml
SHAPES="circle,square,triangle,hexagon"
DATA=$WORK/data
read -r -a launch <<< "$LAUNCH"
read -r -a opts <<< "$OPTS"
TIMES=()

step() {  # step NAME COMMAND...: print the command, run it into a log, show its end, time it
    local name=$1 start end took rc=0 log
    shift
    log="$WORK/logs/${name%% *}.log"
    echo
    echo "== $name  (log: $log)"
    echo "\$ $*"
    start=$EPOCHREALTIME
    "$@" > "$log" 2>&1 || rc=$?
    end=$EPOCHREALTIME
    if [ "$rc" -ne 0 ]; then
        tail -n 30 "$log"
        echo "whole_chain: step '$name' failed with exit status $rc (full output: $log)" >&2
        exit "$rc"
    fi
    grep -v '^\[' "$log" | grep -v '^ *$' | tail -n "${SHOW_LINES:-4}" || true
    took=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    TIMES+=("$(printf '%-30s %7s s' "$name" "$took")")
    echo "[$name: $took s]"
}

mkdir -p "$WORK/logs"
echo "whole chain in $WORK ($NUM_TRAIN train / $NUM_VAL val images, training $TRAIN_ITERS +" \
     "$SELF_TRAIN_ITERS + $FINETUNE_ITERS iterations, launch: ${LAUNCH:-1 process});" \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"

step "1 synthetic data" "$PY" tools/make_synthetic_dataset.py --out "$DATA" \
    --num-train "$NUM_TRAIN" --num-val "$NUM_VAL" --seed 0 --overwrite

# The real pseudo-label job with the tiny random-weight preset (noise labels, marked as such).
mkdir -p "$WORK/label_images"
find "$DATA/train" -name '*.png' | sort | head -n "$LABEL_IMAGES" \
    | xargs -I{} cp {} "$WORK/label_images/"
step "2a pseudo-labels (tiny)" "$PY" tools/generate_pseudo_labels.py \
    --images "$WORK/label_images" --config configs/pseudo/tiny_random.yaml \
    --vocabulary "$SHAPES" --out "$WORK/tiny_labels.json" --overwrite --no-progress --workers 1
step "2b pseudo-labels (discovery)" "$PY" tools/make_discovery_labels.py \
    --gt "$DATA/train.json" --out "$WORK/labels.json" --min-inscribed-radius 2 --seed 0

step "3a validate" "$PY" tools/validate_pseudo_labels.py "$WORK/labels.json" \
    --image-root "$DATA/train"
step "3b visualize" "$PY" tools/visualize_pseudo_labels.py "$WORK/labels.json" \
    --image-root "$DATA/train" --out-dir "$WORK/vis" --num 5
step "3c eval labels vs GT" "$PY" tools/eval_pseudo_labels.py --pred "$WORK/labels.json" \
    --gt "$DATA/train.json"

REG_TRAIN=(--register-dataset chain_train "$WORK/labels.json" "$DATA/train")
REG_VAL=(--register-dataset chain_val "$DATA/val.json" "$DATA/val")
step "4 train (OV Mask R-CNN)" "$PY" tools/train_net.py "${launch[@]}" --config-file "$OV" \
    "${REG_TRAIN[@]}" "${REG_VAL[@]}" \
    DATASETS.TRAIN "('chain_train',)" DATASETS.TEST "('chain_val',)" \
    SOLVER.MAX_ITER "$TRAIN_ITERS" SOLVER.STEPS "()" SOLVER.CHECKPOINT_PERIOD 100000 \
    OUTPUT_DIR "$WORK/train" "${opts[@]}"

step "5 eval-only" "$PY" tools/train_net.py "${launch[@]}" --config-file "$OV" --eval-only \
    "${REG_VAL[@]}" DATASETS.TEST "('chain_val',)" \
    MODEL.WEIGHTS "$WORK/train/model_final.pth" OUTPUT_DIR "$WORK/eval" "${opts[@]}"

# Base / novel AP50 from the saved predictions. Nominal split: all four shapes were in the
# training labels and the random-weight CLIP's text embeddings carry no meaning (wiring check).
step "6 OV eval (base/novel)" "$PY" tools/eval_ov_coco.py \
    --results "$WORK/eval/inference/chain_val/coco_instances_results.json" \
    --gt "$DATA/val.json" --base circle,square,triangle --novel hexagon

step "7 self-train 1 round" "$PY" tools/self_train.py "${launch[@]}" --config-file "$OV" \
    --labels "$WORK/labels.json" --image-root "$DATA/train" \
    --weights "$WORK/train/model_final.pth" --rounds 1 --output-dir "$WORK/self_train" \
    --overwrite "${REG_VAL[@]}" DATASETS.TEST "('chain_val',)" \
    SOLVER.MAX_ITER "$SELF_TRAIN_ITERS" SOLVER.STEPS "()" SOLVER.CHECKPOINT_PERIOD 100000 \
    "${opts[@]}"

step "8a 10 % subset" "$PY" tools/make_label_subset.py --coco-json "$DATA/train.json" \
    --out-dir "$WORK/subsets" --percents 10 --seed 1
step "8b finetune on 10 %" "$PY" tools/train_net.py "${launch[@]}" --config-file "$OV" \
    --register-dataset chain_train_10pct "$WORK/subsets/train_10pct_seed1.json" "$DATA/train" \
    "${REG_VAL[@]}" DATASETS.TRAIN "('chain_train_10pct',)" DATASETS.TEST "('chain_val',)" \
    MODEL.WEIGHTS "$WORK/self_train/round1/model_final.pth" \
    SOLVER.MAX_ITER "$FINETUNE_ITERS" SOLVER.STEPS "()" SOLVER.WARMUP_ITERS 0 \
    SOLVER.CHECKPOINT_PERIOD 100000 OUTPUT_DIR "$WORK/finetune" "${opts[@]}"

# A 3-frame video from the first val images (MJPG .avi: every OpenCV build writes it).
"$PY" -c "import cv2, glob, sys; fs = sorted(glob.glob(sys.argv[1] + '/*.png'))[:3]; \
f = [cv2.imread(p) for p in fs]; w = cv2.VideoWriter(sys.argv[2], \
cv2.VideoWriter_fourcc(*'MJPG'), 2, f[0].shape[1::-1]); [w.write(x) for x in f]; w.release()" \
    "$DATA/val" "$WORK/shapes.avi"
FIRST_VAL=$(find "$DATA/val" -name '*.png' | sort | head -n 1)
step "9 demo (image + video)" "$PY" tools/demo.py --config-file "$OV" \
    --weights "$WORK/finetune/model_final.pth" --vocabulary "$SHAPES" --cpu \
    --input "$FIRST_VAL" "$WORK/shapes.avi" --output "$WORK/demo" --confidence-threshold 0.3

echo
echo "== wall times (load average now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%s\n' "${TIMES[@]}"
