#!/usr/bin/env bash
# Cross-dataset transfer: search and train DPL on ImageNet (few_shot.sh with the cross
# configs), then evaluate the trained prompts on the 10 other datasets and the 4 ImageNet
# variants with --eval-only. A preset (fixed architecture) is trained on ImageNet without a search.
#
#   DATA=/path/to/datasets bash scripts/dpl/cross_dataset.sh SEED [SHOTS] [SEARCH_CFG] [TRAIN_CFG] [-- KEY VALUE ...]
#   DATA=/path/to/datasets bash scripts/dpl/cross_dataset.sh SEED SHOTS - PRESET [-- KEY VALUE ...]
#
#   SEED        random seed
#   SHOTS       training images per source class (default 16)
#   SEARCH_CFG  configs/trainers/DPLSearch/<SEARCH_CFG>.yaml (default vit_b16_ep4_batch4_cross)
#   TRAIN_CFG   configs/trainers/DPL/<TRAIN_CFG>.yaml (default vit_b16_ep2_batch4_cross)
#               SEARCH_CFG and TRAIN_CFG must follow one recipe: a name with _paper_ or
#               _reference_ is that recipe's, any other name "ours" (README, "Where every
#               hyper-parameter comes from"; neither source defines a cross-dataset recipe)
#   - PRESET    no search: PRESET is a configs/trainers/DPL/<PRESET>.yaml that fixes its
#               architecture (as few_shot.sh), e.g. - maple_2ctx_depth3_ep2_batch4_cross; its
#               folders are those of a TRAIN_CFG named PRESET, without the DPLSearch one
#   -- KEY VALUE ...  config overrides for every stage, passed to train.py as they are
#
# Environment: DATA (required), PYTHON, DPL_OUTPUT, DPL_GRAM_FILE (as few_shot.sh; the
# evaluations run with it too, in folders of their own), DPL_SOURCE_DATASET (default imagenet)
# and DPL_TARGET_DATASETS (space-separated; default the 14 below).
#
# Output (MaPLe's layout, which scripts/parse_results.py reads; K = SHOTS; G = +gram with
# DPL_GRAM_FILE, else nothing):
#   $DPL_OUTPUT/<SOURCE>/DPLSearch/<SEARCH_CFG>_<K>shots/seed<SEED>/    search on the source
#   $DPL_OUTPUT/<SOURCE>/DPL/<TRAIN_CFG>G_<K>shots/seed<SEED>/          training, source test accuracy
#   $DPL_OUTPUT/evaluation/DPL/<TRAIN_CFG>G_<K>shots/<TARGET>/seed<SEED>/  one evaluation per target
# Targets are evaluated on all their classes and test images (no few-shot sampling).
# Finished stages are skipped; unfinished training resumes, an unfinished evaluation reruns.
set -euo pipefail

USAGE="usage: DATA=/path/to/datasets bash $0 SEED [SHOTS=16] [SEARCH_CFG|-] [TRAIN_CFG] [-- KEY VALUE ...]"
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
dpl_check_stages "$SEARCH_CFG" "$TRAIN_CFG"
dpl_require_data

bash "$DPL_SCRIPTS/few_shot.sh" "$SOURCE" "$SEED" "$SHOTS" "$SEARCH_CFG" "$TRAIN_CFG" -- ${OVERRIDES[@]+"${OVERRIDES[@]}"}

TRAIN_DIR=$DPL_OUTPUT/$SOURCE/DPL/${TRAIN_CFG}${GRAM_SUFFIX}_${SHOTS}shots/seed$SEED
ARCH=()
if [[ $SEARCH_CFG != - ]]; then
  ARCH=(TRAINER.DPL.ARCH_FILE "$DPL_OUTPUT/$SOURCE/DPLSearch/${SEARCH_CFG}_${SHOTS}shots/seed$SEED/arch.json")
fi
for target in "${TARGETS[@]}"; do
  dpl_eval "evaluate on $target, seed $SEED" \
    "$DPL_OUTPUT/evaluation/DPL/${TRAIN_CFG}${GRAM_SUFFIX}_${SHOTS}shots/$target/seed$SEED" "$TRAIN_DIR" \
    --root "$DATA" --seed "$SEED" --dataset-config-file "configs/datasets/$target.yaml" \
    --trainer DPL --config-file "configs/trainers/DPL/$TRAIN_CFG.yaml" \
    ${ARCH[@]+"${ARCH[@]}"} ${GRAM[@]+"${GRAM[@]}"} ${OVERRIDES[@]+"${OVERRIDES[@]}"}
done
