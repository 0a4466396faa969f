#!/usr/bin/env bash
# Few-shot DPL on the 11 datasets of the paper, for every seed and shot count (few_shot.sh each).
#
#   DATA=/path/to/datasets bash scripts/dpl/few_shot_all.sh [SEEDS] [SHOTS] [SEARCH_CFG] [TRAIN_CFG] [-- KEY VALUE ...]
#
#   SEEDS       space-separated seeds, one argument (default "1 2 3")
#   SHOTS       space-separated shot counts, one argument (default "1 2 4 8 16")
#   SEARCH_CFG  configs/trainers/DPLSearch/<SEARCH_CFG>.yaml (default vit_b16_ep60_batch4)
#   TRAIN_CFG   configs/trainers/DPL/<TRAIN_CFG>.yaml (default vit_b16_ep40_batch4); both of one
#               recipe, e.g. vit_b16_paper_ep60_batch4 vit_b16_paper_ep40_batch4; or '-' and a
#               preset, trained without a search (few_shot.sh), e.g. - coop_16ctx_vit_b16_ep200
#   -- KEY VALUE ...  config overrides passed to every run
#
# Environment: DATA (required), PYTHON, DPL_OUTPUT, DPL_GRAM_FILE (as few_shot.sh: one
# meta-initialisation for every run, so give a preset or a search that finds one configuration),
# and DPL_DATASETS to replace the list of datasets (default: the 11 below).
# Finished runs are skipped and unfinished ones resumed, so an interrupted loop is continued
# by running the same command again. The loop stops at the first failing run.
set -euo pipefail

USAGE="usage: DATA=/path/to/datasets bash $0 [SEEDS=\"1 2 3\"] [SHOTS=\"1 2 4 8 16\"] [SEARCH_CFG|-] [TRAIN_CFG] [-- KEY VALUE ...]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
dpl_split_args 4 "$@"
dpl_init "${BASH_SOURCE[0]}"

read -r -a SEEDS <<<"${POSITIONAL[0]:-1 2 3}"
read -r -a SHOT_LIST <<<"${POSITIONAL[1]:-1 2 4 8 16}"
SEARCH_CFG=${POSITIONAL[2]:-vit_b16_ep60_batch4}
TRAIN_CFG=${POSITIONAL[3]:-vit_b16_ep40_batch4}
read -r -a DATASETS <<<"${DPL_DATASETS:-imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101}"
if ((${#SEEDS[@]} == 0 || ${#SHOT_LIST[@]} == 0 || ${#DATASETS[@]} == 0)); then
  dpl_usage_error "SEEDS, SHOTS and DPL_DATASETS must not be empty"
fi
# Check everything before the first (possibly hours-long) run starts.
for seed in "${SEEDS[@]}"; do dpl_check_int SEED "$seed" 0; done
for shots in "${SHOT_LIST[@]}"; do dpl_check_int SHOTS "$shots" 1; done
for dataset in "${DATASETS[@]}"; do dpl_check_dataset "$dataset"; done
dpl_check_stages "$SEARCH_CFG" "$TRAIN_CFG"
dpl_require_data

for shots in "${SHOT_LIST[@]}"; do
  for dataset in "${DATASETS[@]}"; do
    for seed in "${SEEDS[@]}"; do
      bash "$DPL_SCRIPTS/few_shot.sh" "$dataset" "$seed" "$shots" "$SEARCH_CFG" "$TRAIN_CFG" -- ${OVERRIDES[@]+"${OVERRIDES[@]}"}
    done
  done
done
