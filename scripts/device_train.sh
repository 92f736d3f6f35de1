#!/usr/bin/env bash
# Train the bundled face-s model on a lent GPU machine within one call of the session's device tool.
#
#   here:  bash scripts/device_train.sh prepare          speech bank -> .devkit/, bundled model set aside
#   there: bash scripts/device_train.sh run [MINUTES]    render data on every core, fit the recipe to the
#                                                        time left, train (bf16), export; pieces -> $OUT
#   here:  bash scripts/device_train.sh collect DIR      join the pieces into resources/models/face-s
#   here:  bash scripts/device_train.sh restore          put the set-aside bundled model back (no run made)
#
# Why the dance: the machine has no espeak-ng and no network, so speech travels as a speech bank
# (.devkit/bank, carried); the working tree that travels is capped at 64 MiB with the carried kit, and
# the run brings its own weights, so `prepare` moves every bundled checkpoint out of the tree until
# `collect` or `restore`;
# files come back in pieces of at most 16 MiB. docs/TRAINING_ON_A_GPU.md has the whole procedure.
#
# Knobs for a dry run on a CPU (the test suite uses them): OMNI_SIZE (synth preset, default face-s),
# OMNI_FRAMINGS (synth framing mix, default face=0.6,portrait=0.4), OMNI_RECIPE (default face-s-gpu-session; several,
# comma-separated, train side by side on the one device, each into $OUT/<recipe>/), OMNI_CLIPS (default 3200),
# OMNI_BANK_COUNT (default 480), OMNI_INIT_FROM (prepare: a model folder every run starts from, kept as .devkit/init),
# OMNI_WORKERS (default: all cores), OMNI_DEVICE (default auto), OMNI_WORK (scratch, default /tmp/omni-train),
# OMNI_KIT (default .devkit), OMNI_RESERVE (seconds kept for the export, default 45), OMNI_MIN_TRAIN (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
KIT="${OMNI_KIT:-$ROOT/.devkit}"
ASIDE="${OMNI_ASIDE:-/tmp/omnihuman-aside}"
PIECE_MIB=15

now() { date +%s; }
say() { echo "[device_train $(date +%H:%M:%S)] $*" >&2; }

prepare() {
  local count="${OMNI_BANK_COUNT:-480}"
  local have=0
  [ -f "$KIT/bank/bank.json" ] && have=$(python3 -c "import json, sys; print(len(json.load(open(sys.argv[1]))['utterances']))" \
    "$KIT/bank/bank.json" 2>/dev/null || echo 0)
  if [ "$have" -lt "$count" ]; then
    rm -rf "$KIT/bank"
    mkdir -p "$KIT"
    python3 main.py speech-bank --out "$KIT/bank" --count "$count" --seed 0
  fi
  # A model folder to start every run from (e.g. the trained face-s VAE: its transformer is then new).
  if [ -n "${OMNI_INIT_FROM:-}" ]; then
    rm -rf "$KIT/init"
    mkdir -p "$KIT/init"
    cp "$OMNI_INIT_FROM/config.json" "$OMNI_INIT_FROM/model.safetensors" "$KIT/init/"
    say "runs will start from $OMNI_INIT_FROM (copied to $KIT/init)"
  fi
  # Every bundled diffusion checkpoint leaves the tree that travels (the cap is 64 MiB).
  local f name
  mkdir -p "$ASIDE"
  for f in "$ROOT"/resources/models/*/model.safetensors; do
    [ -f "$f" ] || continue
    name=$(basename "$(dirname "$f")")
    mv "$f" "$ASIDE/$name.safetensors"
    say "bundled checkpoint $name set aside in $ASIDE (restore with: bash scripts/device_train.sh restore)"
  done
  du -sh "$KIT" >&2
  say "ready: device run with carry [\".devkit\"] and the command: bash scripts/device_train.sh run 9.0"
}

restore() {
  local f name
  for f in "$ASIDE"/*.safetensors; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .safetensors)
    if [ ! -f "$ROOT/resources/models/$name/model.safetensors" ]; then
      mv "$f" "$ROOT/resources/models/$name/model.safetensors"
      say "bundled checkpoint $name restored"
    fi
  done
}

run() {
  local minutes="${1:-9.0}"
  local t0 deadline out work size recipes clips workers device init_args=()
  t0=$(now)
  deadline=$(python3 -c "print(int($t0 + 60 * $minutes))")
  out="${OUT:-$ROOT/device-out}"
  work="${OMNI_WORK:-/tmp/omni-train}"
  size="${OMNI_SIZE:-face-s}"
  framings="${OMNI_FRAMINGS:-face=0.6,portrait=0.4}"
  recipes="${OMNI_RECIPE:-face-s-gpu-session}"
  clips="${OMNI_CLIPS:-3200}"
  workers="${OMNI_WORKERS:-$(nproc)}"
  device="${OMNI_DEVICE:-auto}"
  export PYTHONUNBUFFERED=1
  mkdir -p "$out"
  rm -rf "$work"
  mkdir -p "$work"
  exec > >(tee -a "$out/run.log") 2>&1
  say "budget ${minutes} min; $(nproc) cores; $(python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")')"
  python3 -c "import cv2, numpy, safetensors, PIL" || { say "a Python package is missing (cv2, numpy, safetensors, PIL)"; exit 3; }
  [ -f "$KIT/bank/bank.json" ] || { say "no speech bank in $KIT/bank: run 'prepare' here and carry .devkit"; exit 3; }
  if [ -f "$KIT/init/config.json" ]; then
    init_args=(--init "$KIT/init")
    say "every run starts from the model in $KIT/init (its VAE, and its transformer where it fits)"
  fi
  IFS=',' read -r -a recipes <<< "$recipes"
  local r
  for r in "${recipes[@]}"; do
    # Smoke check (seconds): the recipe's model builds on the device and takes one bf16 training step.
    python3 - "$r" "$device" <<'PY' || { say "smoke check failed for $r: the model does not train on this device"; exit 3; }
import sys, torch
from models.training.recipe import load_recipe
from models.model import OmniHuman
from models.dit import Conditions
cfg = load_recipe(sys.argv[1]).model_config()
dev = sys.argv[2] if sys.argv[2] != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
m = OmniHuman(cfg).to(dev)
f = cfg.vae.spatial_factor
x = torch.randn(2, cfg.dit.latent_channels, 3, 64 // f, 64 // f, device=dev)
with torch.autocast(torch.device(dev).type, dtype=torch.bfloat16):
    out = m.transformer(x, torch.rand(2, device=dev), m.transformer.prepare(Conditions(reference=x[:, :, :1], still=x), 3))
out.float().square().mean().backward()
print(f"smoke check: {sys.argv[1]} ({cfg.name}) on {dev}: one step, output {tuple(out.shape)}", file=sys.stderr)
PY
  done

  say "rendering $clips clips ($size) on $workers processes"
  python3 main.py synth --clips "$clips" --out "$work/data" --size "$size" --seed 0 \
    --speech-bank "$KIT/bank" --workers "$workers" --framings "$framings" 2>&1 | grep -v "^synth:" || true
  [ -f "$work/data/index.json" ] || { say "synth failed"; exit 4; }
  say "data ready after $(( $(now) - t0 )) s"

  # What is left, less a reserve for the export and the pieces, goes to timing and training; the
  # fitted plan aims 10% short of it for what probe steps do not see (loader starts between stages,
  # checkpoints, latent calibration), and --max-minutes cuts the run at the reserve in any case.
  # Several recipes train side by side on the one device: they are timed side by side too, so each
  # plan is fitted at the speed it gets while sharing.
  local left="$(( deadline - $(now) - ${OMNI_RESERVE:-45} ))"
  [ "$left" -gt "${OMNI_MIN_TRAIN:-60}" ] || { say "too little time left to train ($left s)"; exit 5; }
  local pids=() dests=() dest failed=0 i
  for r in "${recipes[@]}"; do
    dest="$out"
    [ "${#recipes[@]}" -gt 1 ] && dest="$out/$(basename "$r" .json)"
    mkdir -p "$dest"
    train_one "$r" "$dest" "$work/$(basename "$r" .json)" "$deadline" "$left" "${init_args[@]}" &
    pids+=("$!")
    dests+=("$dest")
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { failed=$?; say "no model from ${recipes[$i]} (exit $failed)"; }
  done
  say "done in $(( $(now) - t0 )) s: $(cd "$out" && find . -type f | sort | tr '\n' ' ')"
  return "$failed"
}

# One recipe: fit it to the time left, train, export, and cut the checkpoint into pieces in DEST.
train_one() {
  local recipe="$1" dest="$2" work="$3" deadline="$4" left="$5"
  shift 5
  local name fit_minutes reserve="${OMNI_RESERVE:-45}" device="${OMNI_DEVICE:-auto}"
  name=$(basename "$recipe" .json)
  mkdir -p "$work"
  python3 main.py fit-recipe --recipe "$recipe" --data "$(dirname "$work")/data" --device "$device" \
    --end-by "$(( $(now) + left * 9 / 10 ))" --out "$work/fitted.json" 2>&1 | sed "s/^/[$name] /" || true
  [ -f "$work/fitted.json" ] || { say "$name: fit-recipe failed"; return 6; }
  fit_minutes=$(python3 -c "print(max(0.2, ($deadline - $(now) - $reserve) / 60))")
  say "$name: training for at most $fit_minutes min"
  if ! python3 main.py train --recipe "$work/fitted.json" --data "$(dirname "$work")/data" --out "$work/run" \
      --device "$device" --max-minutes "$fit_minutes" --export "$work/model" "$@" 2>&1 | sed "s/^/[$name] /"; then
    :
  fi
  if [ ! -f "$work/model/model.safetensors" ]; then
    # A crash late in the run still brings back its last checkpoint (one every fifth of the plan).
    say "$name: training failed; exporting the last checkpoint"
    python3 main.py export-model "$work/run" --out "$work/model" || { say "$name: no checkpoint to export"; return 6; }
  fi
  cp "$work/fitted.json" "$dest/recipe.fitted.json"
  cp "$work/run/log.jsonl" "$dest/log.jsonl"
  cp "$work/model/config.json" "$dest/config.json"
  cp "$work/model/MODEL_CARD.md" "$dest/MODEL_CARD.md"
  split -b "${PIECE_MIB}M" -d -a 1 "$work/model/model.safetensors" "$dest/model.safetensors.part"
  sha256sum "$work/model/model.safetensors" | cut -d' ' -f1 > "$dest/model.sha256"
  say "$name: exported to $dest"
}

collect() {
  local src="${1:?usage: collect DIR: the folder the files of the device run came back to}"
  local dest="${2:-$ROOT/resources/models/face-s}"
  local tmp
  tmp=$(mktemp -d)
  cat "$src"/model.safetensors.part* > "$tmp/model.safetensors"
  if [ "$(sha256sum "$tmp/model.safetensors" | cut -d' ' -f1)" != "$(cat "$src/model.sha256")" ]; then
    say "checksum mismatch: the pieces in $src do not make the model that was trained"; exit 6
  fi
  mkdir -p "$dest"
  cp "$src/config.json" "$dest/config.json"
  mv "$tmp/model.safetensors" "$dest/model.safetensors"
  python3 -c "
import sys; from models.checkpoint import load_model
m = load_model(sys.argv[1]); print(f'{sys.argv[1]}: {m.config.name} loads')" "$dest"
  [ -f "$ASIDE/$(basename "$dest").safetensors" ] && rm -f "$ASIDE/$(basename "$dest").safetensors"
  restore
  say "collected into $dest; write its MODEL_CARD.md from $src/MODEL_CARD.md and an eval run"
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  collect) shift; collect "$@" ;;
  restore) restore ;;
  *) echo "usage: bash scripts/device_train.sh prepare | run [MINUTES] | collect DIR [DEST] | restore" >&2; exit 2 ;;
esac
