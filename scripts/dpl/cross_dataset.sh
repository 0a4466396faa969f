#!/usr/bin/env bash
# Cross-dataset transfer: search and train DPL on ImageNet (few_shot.sh with the cross
# configs), then evaluate the trained prompts on the 10 other datasets and the 4 ImageNet
# variants with --eval-only.
#
#   DATA=/path/to/datasets bash scripts/dpl/cross_dataset.sh SEED [SHOTS] [SEARCH_CFG] [TRAIN_CFG] [-- KEY VALUE ...]
#
#   SEED        random seed
#   SHOTS       training images per source class (default 16)
#   SEARCH_CFG  configs/trainers/DPLSearch/<SEARCH_CFG>.yaml (default vit_b16_ep4_batch4_cross)
#   TRAIN_CFG   configs/trainers/DPL/<TRAIN_CFG>.yaml (default vit_b16_ep2_batch4_cross)
#               SEARCH_CFG and TRAIN_CFG must follow one recipe: a name with _paper_ or
#               _reference_ is that recipe's, any other name "ours" (README, "Where every
#               hyper-parameter comes from"; neither source defines a cross-dataset recipe)
#   -- KEY VALUE ...  config overrides for every stage, passed to train.py as they are
#
# Environment: DATA (required), PYTHON, DPL_OUTPUT (as few_shot.sh), DPL_SOURCE_DATASET
# (default imagenet) and DPL_TARGET_DATASETS (space-separated; default the 14 below).
#
# Output (MaPLe's layout, which scripts/parse_results.py reads; K = SHOTS):
#   $DPL_OUTPUT/<SOURCE>/DPLSearch/<SEARCH_CFG>_<K>shots/seed<SEED>/   search on the source
#   $DPL_OUTPUT/<SOURCE>/DPL/<TRAIN_CFG>_<K>shots/seed<SEED>/          training, source test accuracy
#   $DPL_OUTPUT/evaluation/DPL/<TRAIN_CFG>_<K>shots/<TARGET>/seed<SEED>/  one evaluation per target
# Targets are evaluated on all their classes and test images (no few-shot sampling).
# Finished stages are skipped; unfinished training resumes, an unfinished evaluation reruns.
set -euo pipefail

USAGE="usage: DATA=/path/to/datasets bash $0 SEED [SHOTS=16] [SEARCH_CFG] [TRAIN_CFG] [-- KEY VALUE ...]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
dpl_split_args 4 "$@"
dpl_init "${BASH_SOURCE[0]}"

if ((${#POSITIONAL[@]} < 1)); then
  dpl_usage_error "SEED is required"
fi
SEED=${POSITIONAL[0]}
SHOTS=${POSITIONAL[1]:-16}
SEARCH_CFG=${POSITIONAL[2]:-vit_b16_ep4_batch4_cross}
TRAIN_CFG=${POSITIONAL[3]:-vit_b16_ep2_batch4_cross}
SOURCE=${DPL_SOURCE_DATASET:-imagenet}
read -r -a TARGETS <<<"${DPL_TARGET_DATASETS:-caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101 imagenetv2 imagenet_sketch imagenet_a imagenet_r}"
if ((${#TARGETS[@]} == 0)); then
  dpl_usage_error "DPL_TARGET_DATASETS must name at least one dataset"
fi
dpl_check_int SEED "$SEED" 0
dpl_check_int SHOTS "$SHOTS" 1
dpl_check_dataset "$SOURCE"
for target in "${TARGETS[@]}"; do dpl_check_dataset "$target"; done
dpl_check_cfg DPLSearch "$SEARCH_CFG"
dpl_check_cfg DPL "$TRAIN_CFG"
dpl_check_recipes "$SEARCH_CFG" "$TRAIN_CFG"
dpl_require_data

bash "$DPL_SCRIPTS/few_shot.sh" "$SOURCE" "$SEED" "$SHOTS" "$SEARCH_CFG" "$TRAIN_CFG" -- ${OVERRIDES[@]+"${OVERRIDES[@]}"}

SEARCH_DIR=$DPL_OUTPUT/$SOURCE/DPLSearch/${SEARCH_CFG}_${SHOTS}shots/seed$SEED
TRAIN_DIR=$DPL_OUTPUT/$SOURCE/DPL/${TRAIN_CFG}_${SHOTS}shots/seed$SEED
for target in "${TARGETS[@]}"; do
  dpl_eval "evaluate on $target, seed $SEED" \
    "$DPL_OUTPUT/evaluation/DPL/${TRAIN_CFG}_${SHOTS}shots/$target/seed$SEED" "$TRAIN_DIR" \
    --root "$DATA" --seed "$SEED" --dataset-config-file "configs/datasets/$target.yaml" \
    --trainer DPL --config-file "configs/trainers/DPL/$TRAIN_CFG.yaml" \
    TRAINER.DPL.ARCH_FILE "$SEARCH_DIR/arch.json" ${OVERRIDES[@]+"${OVERRIDES[@]}"}
done
