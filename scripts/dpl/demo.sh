#!/usr/bin/env bash
# Quick start: the whole DPL pipeline in one to two minutes on a CPU, without downloads.
#
#   bash scripts/dpl/demo.sh
#
# On the generated `synthetic` dataset (6 classes of coloured shapes) and a tiny CLIP with
# random weights written on the fly, runs the base-to-new protocol of base2new.sh with a few
# epochs: search the prompt lengths on the base classes, train them, evaluate on the new
# classes (--eval-only). Then prints the architecture found, the results table
# (scripts/parse_results.py) and the search plots (scripts/plot_search.py). The tiny CLIP
# comes from trainers/dpl_core/tiny_clip.py, so the demo also runs in a CoOp/MaPLe checkout
# after scripts/install_into.sh (there both scripts are in scripts/dpl/).
#
# Random weights make every accuracy here meaningless: the demo checks that the pipeline
# runs, not what DPL achieves. For real runs see the end of the output.
#
# Environment: DATA (default ./data in the repository; the synthetic set is generated in
# $DATA/synthetic on first use), DPL_OUTPUT (default ./output_demo in the repository),
# PYTHON (default python); DPL_GRAM_FILE is ignored: the demo runs without GRAM.
# Running it again skips the finished stages and prints again.
set -euo pipefail

USAGE="usage: bash $0   (no arguments; see the header for the environment variables)"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if (($#)); then
  dpl_usage_error "demo.sh takes no arguments"
fi
unset DPL_GRAM_FILE  # a meta-initialisation made for real CLIP prompts would not fit the tiny CLIP's
dpl_init "${BASH_SOURCE[0]}"
if [[ $DPL_OUTPUT == output ]]; then  # DPL_OUTPUT was not set (dpl_init makes a given one absolute)
  DPL_OUTPUT=$DPL_ROOT/output_demo  # keep the demo apart from real results in output/
fi
DATA=${DATA:-$DPL_ROOT/data}
mkdir -p "$DATA" "$DPL_OUTPUT"
export DATA DPL_OUTPUT

DATASET=synthetic
SEED=1
SHOTS=4
CLIP_FILE=$(cd "$DPL_OUTPUT" && pwd)/tiny_random_clip.pt
SEARCH_DIR=$DPL_OUTPUT/base2new/train_base/$DATASET/shots_$SHOTS/DPLSearch/vit_b16_ep20_batch4_b2n/seed$SEED
START=$SECONDS
# The results and plot scripts sit in scripts/ here and beside this script in a CoOp/MaPLe
# checkout that scripts/install_into.sh installed DPL into.
TOOLS=$DPL_SCRIPTS
[[ -f $TOOLS/parse_results.py ]] || TOOLS=$DPL_ROOT/scripts

if [[ ! -f $CLIP_FILE ]]; then
  echo "[run] writing a tiny randomly initialised CLIP to $CLIP_FILE"
  "$PYTHON" -W "ignore:pkg_resources is deprecated:UserWarning" -c 'import sys; from trainers.dpl_core.tiny_clip import write_tiny_checkpoint; write_tiny_checkpoint(sys.argv[1])' \
    "$CLIP_FILE.tmp"
  mv "$CLIP_FILE.tmp" "$CLIP_FILE"
fi

# Short schedules and 32x32 inputs for the tiny model; the yaml files keep the paper's values.
# The full output goes to RUN_LOG (and each run's log.txt); the terminal shows the milestones.
RUN_LOG=$DPL_OUTPUT/demo_output.txt
echo "[run] base2new.sh $DATASET $SEED $SHOTS (full output: $RUN_LOG)"
if ! bash "$DPL_SCRIPTS/base2new.sh" "$DATASET" "$SEED" "$SHOTS" -- \
  TRAINER.DPL.CLIP_CHECKPOINT "$CLIP_FILE" INPUT.SIZE "(32, 32)" OPTIM.MAX_EPOCH 3 \
  TRAINER.DPLSEARCH.MAX_LENGTH 3 DATALOADER.NUM_WORKERS 0 2>&1 |
  tee "$RUN_LOG" | grep --line-buffered -E '^\[(run|skip|resume|rerun)\]|^epoch \[[0-9]+/[0-9]+\] architecture|^\* accuracy|^error'; then
  tail -n 25 "$RUN_LOG" >&2
  dpl_die "the demo failed (last lines above); the full output is in $RUN_LOG"
fi

banner() {
  printf '\n==================== %s ====================\n' "$1"
}

banner "Architecture found by the search"
arch=$(grep -h "^Searched architecture: " "$SEARCH_DIR"/log.txt* | tail -n 1)
echo "${arch#Searched architecture: }"
echo "(prompt vectors per block; the tiny CLIP has 3 text and 2 image blocks, ViT-B/16 has 12 and 12)"
echo "saved in $SEARCH_DIR/arch.json"

banner "Results (${TOOLS#"$DPL_ROOT"/}/parse_results.py $DPL_OUTPUT)"
"$PYTHON" "$TOOLS/parse_results.py" "$DPL_OUTPUT"

banner "Search plots (${TOOLS#"$DPL_ROOT"/}/plot_search.py)"
"$PYTHON" "$TOOLS/plot_search.py" "$SEARCH_DIR"

banner "Done in $((SECONDS - START)) s"
cat <<EOF
The CLIP above has RANDOM WEIGHTS: its accuracies are meaningless (near chance). The demo
only shows that search, training and evaluation run end to end.

With real CLIP weights, drop the TRAINER.DPL.CLIP_CHECKPOINT override and the short
schedules, e.g.

    DATA=/path/to/datasets bash scripts/dpl/base2new.sh eurosat 1
    DATA=/path/to/datasets bash scripts/dpl/few_shot.sh eurosat 1 16

The ViT-B/16 weights are read from ~/.cache/clip (downloaded there by the clip package if
missing), or from a file you name:  ... -- TRAINER.DPL.CLIP_CHECKPOINT /path/to/ViT-B-16.pt
EOF
