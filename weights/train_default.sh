#!/usr/bin/env bash
# Rebuilds weights/crew2-sim-t.pt and weights/crew2-sim-t.onnx with crew2's own commands only.
# Usage: bash weights/train_default.sh [data folder] [run folder]     (see weights/README.md for the figures)
# Settings, from the environment:
#   JOBS     recordings and drives run side by side (default: every core)
#   DEVICE   auto, cpu or cuda; BATCH (64), WORKERS (2) and LR (0.001) for the DAgger fine-tunes
#   BASE     a checkpoint to start the DAgger rounds from; without it the base model is trained first (EPOCHS)
#   ROUNDS   DAgger rounds (1), EPISODES driven per round (16)
#   FRAMES   frames per recorded session and per driven episode (2400: 2 minutes at 20 fps)
#   EVAL     0 skips the closed-loop check at the end
set -euo pipefail
data=${1:-runs/default-data}
run=${2:-runs/default}
crew2=${CREW2:-crew2}
jobs=${JOBS:-$(nproc)}
device=${DEVICE:-auto}
frames=${FRAMES:-2400}
mkdir -p "$data" "$run"

parallel() {  # runs the command lines on stdin, $jobs at a time, one thread each; fails if any of them failed
  OPENCV_FOR_THREADS_NUM=1 OMP_NUM_THREADS=1 xargs -P "$jobs" -I{} bash -c '{}'
}
job() {  # NAME COMMAND...: a line for `parallel` that writes $data/NAME.h5 (COMMAND ends with its output option),
  # renamed into place only once complete, so an interrupted run does it again; nothing if it is already there
  local name=$1; shift
  [ -f "$data/$name.h5" ] || echo "$* $data/part-$name.h5 >$data/$name.log 2>&1 && mv $data/part-$name.h5 $data/$name.h5"
}

# 1. Record the simulator driven by the noisy autopilot (DART: executed keys are perturbed, the stored label
#    is what the expert wanted), with the ground-truth boxes of every frame. Training seeds 100-147 and
#    validation seeds 200-205 never overlap the tuning (300-315) or held-out evaluation seeds (1000 and up).
#    Every other session has randomised colours, light and camera.
for seed in $(seq 100 147) $(seq 200 205); do
  look=""; if (( seed % 2 )); then look=--randomize; fi
  job "sim-$seed" $crew2 record --source sim --seed "$seed" --noise 1.0 --frames "$frames" --countdown 0 $look --out
done | parallel
val="$(ls "$data"/sim-2??.h5 | paste -sd, -)"
expert="$(ls "$data"/sim-1??.h5 | paste -sd, -)"

# 2. The base model: both heads trained on the expert's sessions (validation on the 200-series sessions, which
#    also calibrate the key thresholds). The shipped model was made before crew2 train's defaults became the
#    key head's "where" pooling, the shipped weights as the start and idle trimming: these options keep its recipe.
if [ -n "${BASE:-}" ]; then
  base=$BASE
else
  printf 'train: [%s]\nval: [%s]\n' "$expert" "$val" > "$data/split-base.yaml"
  $crew2 train --split "$data/split-base.yaml" --out "$run/base" --epochs "${EPOCHS:-4}" --batch 32 --scale t \
    --key-pool mean --pretrained none --trim-idle 0 --device "$device"
  base=$run/base/best.pt
fi

# 3. DAgger: the latest model drives the simulator (with crash prevention) on fresh seeds, and every frame it
#    drove into is labelled with the keys the autopilot would press there; then the model is fine-tuned for one
#    epoch on the expert's sessions plus every round's drives so far.
model=$base
for round in $(seq 1 "${ROUNDS:-1}"); do
  out=$run/dagger$round
  mkdir -p "$out"
  if [ -f "$out/model.pt" ]; then model=$out/model.pt; continue; fi  # done in an earlier run
  [ -f "$out/start.onnx" ] || $crew2 export "$model" --slim "$out/start.pt" --out "$out/start.onnx"
  for seed in $(seq $((600 + 100 * round)) $((600 + 100 * round + ${EPISODES:-16} - 1))); do
    job "dagger-$seed" $crew2 drive "$out/start.onnx" --source sim --seed "$seed" --seconds $((frames / 20)) \
      --countdown 0 --expert-labels --record
  done | parallel
  printf 'train: [%s,%s]\nval: [%s]\n' "$expert" "$(ls "$data"/dagger-*.h5 | paste -sd, -)" "$val" \
    > "$data/split-dagger$round.yaml"
  $crew2 train --split "$data/split-dagger$round.yaml" --out "$out" --epochs 1 --pretrained "$model" \
    --lr "${LR:-0.001}" --batch "${BATCH:-64}" --workers "${WORKERS:-2}" --device "$device" --scale t \
    --key-pool mean --trim-idle 0
  $crew2 export "$out/best.pt" --slim "$out/model.pt" --out "$out/model.onnx"
  model=$out/model.pt
done

# 4. Ship: the last round's model, inference-only, and its ONNX export (checked against PyTorch).
$crew2 export "$model" --slim weights/crew2-sim-t.pt --out weights/crew2-sim-t.onnx

# 5. Judge it in closed loop on 20 held-out seeds, against the autopilot, with and without crash prevention.
if [ "${EVAL:-1}" != 0 ]; then
  $crew2 eval weights/crew2-sim-t.onnx --drive --episodes 20 --seeds 1000 --json "$run/closed-loop.json"
fi
