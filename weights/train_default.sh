#!/usr/bin/env bash
# Rebuilds weights/crew2-sim-t.pt and weights/crew2-sim-t.onnx with crew2's own commands only.
# Usage: bash weights/train_default.sh [data folder] [run folder]     (see weights/README.md for the figures)
set -euo pipefail
data=${1:-runs/default-data}
run=${2:-runs/default}
crew2=${CREW2:-crew2}
mkdir -p "$data"

# 1. Record the simulator driven by the noisy autopilot (DART: executed keys are perturbed, the stored label
#    is what the expert wanted). Training seeds 100-147 and validation seeds 200-205 never overlap the
#    held-out evaluation seeds (1000 and up). Every other session has randomised colours, light and camera.
record() {  # seed, frames, extra options...
  local seed=$1 frames=$2; shift 2
  [ -f "$data/sim-$seed.h5" ] || $crew2 record --source sim --seed "$seed" --noise 1.0 --frames "$frames" \
    --countdown 0 --out "$data/sim-$seed.h5" "$@"
}
for seed in $(seq 100 147); do
  if (( seed % 2 )); then record "$seed" 2400 --randomize; else record "$seed" 2400; fi
done
for seed in $(seq 200 205); do
  if (( seed % 2 )); then record "$seed" 2400 --randomize; else record "$seed" 2400; fi
done

# 2. Obstacle boxes: sim sessions are annotated from the simulator's ground truth (replayed from the
#    recorded seed and noise, exactly as rendered).
for f in "$data"/sim-*.h5; do $crew2 annotate auto "$f" --from sim; done

# 3. Train both heads (validation on the 200-series sessions), calibrating key thresholds on validation.
cat > "$data/split.yaml" <<YAML
train: [$(ls "$data"/sim-1??.h5 | paste -sd, -)]
val: [$(ls "$data"/sim-2??.h5 | paste -sd, -)]
YAML
$crew2 train --split "$data/split.yaml" --out "$run" --epochs "${EPOCHS:-4}" --batch 32 --scale t

# 4. Ship: the best checkpoint, inference-only, and its ONNX export (checked against PyTorch).
$crew2 export "$run/best.pt" --slim weights/crew2-sim-t.pt --out weights/crew2-sim-t.onnx

# 5. Judge it in closed loop on 20 held-out seeds, against the autopilot, with and without crash prevention.
$crew2 eval weights/crew2-sim-t.onnx --drive --episodes 20 --seeds 1000 --json "$run/closed-loop.json"
