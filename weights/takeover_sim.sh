#!/usr/bin/env bash
# One round of human takeover (HG-DAgger) on the simulator's window, the autopilot playing the person who
# corrects crew2; the README's "Human takeover" figures for the simulator come from this script.
# Usage: bash weights/takeover_sim.sh [run folder]        (DISPLAY unset: it starts its own Xvfb)
#   1. model A from a small budget: 6 sessions of the noisy autopilot (DART, seeds 100-105, 2 min each), 2 epochs
#   2. A drives the window (`crew2 sim --guard`, tracks from seed 400) for GUARDED seconds with --corrections;
#      the autopilot takes the keys through XTest when the car is in trouble and gives them back when it is calm
#   3. model B: crew2 train --pretrained A on the same sessions and the corrections, 2 epochs
#   4. crew2 eval --drive on held-out seeds (1000 on) for A and B
set -euo pipefail
run=${1:-runs/takeover-sim}
crew2=${CREW2:-crew2}
guarded=${GUARDED:-180}
episodes=${EPISODES:-5}
mkdir -p "$run/sessions" "$run/corrections"

for seed in 100 101 102 103 104 105; do
  [ -f "$run/sessions/sim-$seed.h5" ] || $crew2 record --source sim --seed "$seed" --noise 1.0 --frames 2400 \
    --countdown 0 --out "$run/sessions/sim-$seed.h5" > "$run/record-$seed.log"
done
[ -f "$run/A/best.onnx" ] || { $crew2 train "$run/sessions" --epochs 2 --out "$run/A" > "$run/train-A.log" \
  && $crew2 export "$run/A/best.pt" > /dev/null; }

if [ ! -f "$run/corrections/round1.h5" ]; then
  xvfb=""
  if [ -z "${DISPLAY:-}" ]; then
    export DISPLAY=:157
    Xvfb "$DISPLAY" -screen 0 1280x1024x24 -nolisten tcp -noreset > /dev/null 2>&1 & xvfb=$!
    sleep 2
  fi
  SDL_AUDIODRIVER=dummy $crew2 sim --guard --width 256 --height 144 --fps 20 --seed 400 --seconds $((guarded + 20)) \
    --json "$run/guarded.json" > "$run/sim.log" 2>&1 & game=$!
  ${PYTHON:-python3} - <<'PY'
import time
from crew2 import x11
from crew2.sim.window import WINDOW_TITLE
dpy = x11.open_display()
for _ in range(100):
    try:
        x11.focus(dpy, x11.find_window(dpy, WINDOW_TITLE))  # no window manager under Xvfb: give it the keyboard
        break
    except Exception:
        time.sleep(0.2)
PY
  $crew2 drive "$run/A/best.onnx" --source window --window "crew2 sim" --fps 20 --countdown 0 --seconds "$guarded" \
    --log "$run/guarded-frames.jsonl" --corrections "$run/corrections/part.h5" > "$run/drive.log" 2>&1
  wait "$game" || true
  [ -n "$xvfb" ] && kill "$xvfb"
  mv "$run/corrections/part.h5" "$run/corrections/round1.h5"
fi
[ -f "$run/B/best.onnx" ] || { $crew2 train "$run/sessions" "$run/corrections" --pretrained "$run/A/best.pt" \
  --epochs 2 --out "$run/B" > "$run/train-B.log" && $crew2 export "$run/B/best.pt" > /dev/null; }

for m in A B; do
  [ -f "$run/eval-$m.json" ] || $crew2 eval "$run/$m/best.onnx" --drive --episodes "$episodes" --seeds 1000 \
    --json "$run/eval-$m.json" > "$run/eval-$m.log"
done
tail -n 3 "$run/drive.log"; grep -h "mean" "$run"/eval-*.log || true
