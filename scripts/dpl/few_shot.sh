#!/usr/bin/env bash
# Few-shot DPL on one dataset and seed: search the architecture, then train it; or train a
# preset, whose architecture is fixed, without a search.
#
#   DATA=/path/to/datasets bash scripts/dpl/few_shot.sh DATASET SEED [SHOTS] [SEARCH_CFG] [TRAIN_CFG] [-- KEY VALUE ...]
#   DATA=/path/to/datasets bash scripts/dpl/few_shot.sh DATASET SEED SHOTS - PRESET [-- KEY VALUE ...]
#
#   DATASET     name of a configs/datasets/<DATASET>.yaml, e.g. eurosat, imagenet
#   SEED        random seed (the papers report seeds 1 2 3)
#   SHOTS       training images per class (default 16)
#   SEARCH_CFG  configs/trainers/DPLSearch/<SEARCH_CFG>.yaml (default vit_b16_ep60_batch4)
#   TRAIN_CFG   configs/trainers/DPL/<TRAIN_CFG>.yaml (default vit_b16_ep40_batch4)
#               SEARCH_CFG and TRAIN_CFG must follow one recipe: a name with _paper_ or
#               _reference_ is that recipe's, any other name "ours" (README, "Where every
#               hyper-parameter comes from"); e.g. vit_b16_paper_ep60_batch4 vit_b16_paper_ep40_batch4
#   - PRESET    no search: PRESET is a configs/trainers/DPL/<PRESET>.yaml that fixes its
#               architecture (sets ARCH_FILE under configs/architectures/, e.g.
#               coop_16ctx_vit_b16_ep50, maple_2ctx_depth9_ep5_batch4, or TEXT_LENGTHS /
#               IMAGE_LENGTHS, e.g. manual_ivlp_2ctx_depth9); a preset after a SEARCH_CFG is refused
#   -- KEY VALUE ...  config overrides for both stages, passed to train.py as they are,
#                     e.g. -- TRAINER.DPL.CLIP_CHECKPOINT /models/ViT-B-16.pt
#
# Optional arguments are positional: to give TRAIN_CFG, give SHOTS and SEARCH_CFG too.
# Environment: DATA (required), PYTHON (default python), DPL_OUTPUT (default output),
# DPL_GRAM_FILE (a gram_meta_init.pt of scripts/gram/meta_train.py for this prompt configuration:
# the training starts from it, into its own folder; the search is the plain run's).
#
# Output (CoOp layout; the training stage reads the search's arch.json; G = +gram with
# DPL_GRAM_FILE, else nothing):
#   $DPL_OUTPUT/<DATASET>/DPLSearch/<SEARCH_CFG>_<SHOTS>shots/seed<SEED>/  log.txt arch.json alpha_history.jsonl
#   $DPL_OUTPUT/<DATASET>/DPL/<TRAIN_CFG>G_<SHOTS>shots/seed<SEED>/        log.txt (test accuracy at the end)
# A preset writes only the second folder (the folder manual.sh writes for it).
# A stage whose log says 'Finish training' is skipped; an unfinished one resumes in its folder.
# Paths inside overrides are read from the repository root (the script runs there).
set -euo pipefail

USAGE="usage: DATA=/path/to/datasets bash $0 DATASET SEED [SHOTS=16] [SEARCH_CFG|-] [TRAIN_CFG] [-- KEY VALUE ...]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
dpl_split_args 5 "$@"
dpl_init "${BASH_SOURCE[0]}"

dpl_search_train_args vit_b16_ep60_batch4 vit_b16_ep40_batch4
dpl_require_data

TRAIN_DIR=$DPL_OUTPUT/$DATASET/DPL/${TRAIN_CFG}${GRAM_SUFFIX}_${SHOTS}shots/seed$SEED
COMMON=(--root "$DATA" --seed "$SEED" --dataset-config-file "configs/datasets/$DATASET.yaml")
ARCH=()

if [[ $SEARCH_CFG != - ]]; then
  SEARCH_DIR=$DPL_OUTPUT/$DATASET/DPLSearch/${SEARCH_CFG}_${SHOTS}shots/seed$SEED
  dpl_search "search $DATASET seed $SEED, $SHOTS shots" "$SEARCH_DIR" \
    "${COMMON[@]}" --trainer DPLSearch --config-file "configs/trainers/DPLSearch/$SEARCH_CFG.yaml" \
    DATASET.NUM_SHOTS "$SHOTS" ${OVERRIDES[@]+"${OVERRIDES[@]}"}
  ARCH=(TRAINER.DPL.ARCH_FILE "$SEARCH_DIR/arch.json")
fi

dpl_train "train $DATASET seed $SEED, $SHOTS shots" "$TRAIN_DIR" \
  "${COMMON[@]}" --trainer DPL --config-file "configs/trainers/DPL/$TRAIN_CFG.yaml" \
  DATASET.NUM_SHOTS "$SHOTS" ${ARCH[@]+"${ARCH[@]}"} ${GRAM[@]+"${GRAM[@]}"} ${OVERRIDES[@]+"${OVERRIDES[@]}"}
