#!/usr/bin/env bash
# Base-to-new generalisation: search and train DPL on the base classes (the first half of
# the labels), then evaluate the trained prompts on the new classes with --eval-only. A preset
# (fixed architecture) is trained on the base classes without a search.
#
#   DATA=/path/to/datasets bash scripts/dpl/base2new.sh DATASET SEED [SHOTS] [SEARCH_CFG] [TRAIN_CFG] [-- KEY VALUE ...]
#   DATA=/path/to/datasets bash scripts/dpl/base2new.sh DATASET SEED SHOTS - PRESET [-- KEY VALUE ...]
#
#   DATASET     name of a configs/datasets/<DATASET>.yaml
#   SEED        random seed
#   SHOTS       training images per base class (default 16, the protocol's value)
#   SEARCH_CFG  configs/trainers/DPLSearch/<SEARCH_CFG>.yaml (default vit_b16_ep20_batch4_b2n)
#   TRAIN_CFG   configs/trainers/DPL/<TRAIN_CFG>.yaml (default vit_b16_ep10_batch4_b2n)
#               SEARCH_CFG and TRAIN_CFG must follow one recipe: a name with _paper_ or
#               _reference_ is that recipe's, any other name "ours" (README, "Where every
#               hyper-parameter comes from"); e.g. vit_b16_reference_ep20_batch4_b2n vit_b16_reference_ep40_batch4
#   - PRESET    no search: PRESET is a configs/trainers/DPL/<PRESET>.yaml that fixes its
#               architecture (as few_shot.sh), e.g. - maple_2ctx_depth9_ep5_batch4; its folders
#               are those of a TRAIN_CFG named PRESET, without the DPLSearch one
#   -- KEY VALUE ...  config overrides for every stage, passed to train.py as they are
#
# Environment: DATA (required), PYTHON (default python), DPL_OUTPUT (default output),
# DPL_GRAM_FILE (a gram_meta_init.pt of scripts/gram/meta_train.py for this prompt configuration:
# training and evaluations run with it, in folders of their own; the search is the plain run's),
# and DPL_TEST_BASE=1 to also evaluate the base classes into test_base/ (MaPLe's layout; the
# training run already ends with a test on the base classes, which the tables use otherwise).
#
# Output (MaPLe's layout, S = shots_<SHOTS>; G = +gram with DPL_GRAM_FILE, else nothing):
#   $DPL_OUTPUT/base2new/train_base/<DATASET>/S/DPLSearch/<SEARCH_CFG>/seed<SEED>/  search on base classes (arch.json)
#   $DPL_OUTPUT/base2new/train_base/<DATASET>/S/DPL/<TRAIN_CFG>G/seed<SEED>/       training, base-class test accuracy
#   $DPL_OUTPUT/base2new/test_new/<DATASET>/S/DPL/<TRAIN_CFG>G/seed<SEED>/         new-class accuracy (--eval-only)
#   $DPL_OUTPUT/base2new/test_base/<DATASET>/S/DPL/<TRAIN_CFG>G/seed<SEED>/        only with DPL_TEST_BASE=1
# Evaluations load the last checkpoint of the training run. Finished stages are skipped
# (an evaluation is finished once its log has '=> result' and an accuracy); unfinished
# training resumes in its folder and an unfinished evaluation runs again.
set -euo pipefail

USAGE="usage: DATA=/path/to/datasets bash $0 DATASET SEED [SHOTS=16] [SEARCH_CFG|-] [TRAIN_CFG] [-- KEY VALUE ...]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
dpl_split_args 5 "$@"
dpl_init "${BASH_SOURCE[0]}"

dpl_search_train_args vit_b16_ep20_batch4_b2n vit_b16_ep10_batch4_b2n
case ${DPL_TEST_BASE:-0} in
  0 | 1) ;;
  *) dpl_usage_error "DPL_TEST_BASE must be 0 or 1, got '$DPL_TEST_BASE'" ;;
esac
dpl_require_data

RUN=$DATASET/shots_$SHOTS
TRAIN_DIR=$DPL_OUTPUT/base2new/train_base/$RUN/DPL/$TRAIN_CFG$GRAM_SUFFIX/seed$SEED
COMMON=(--root "$DATA" --seed "$SEED" --dataset-config-file "configs/datasets/$DATASET.yaml")
DPL_ARGS=("${COMMON[@]}" --trainer DPL --config-file "configs/trainers/DPL/$TRAIN_CFG.yaml")
ARCH=()

if [[ $SEARCH_CFG != - ]]; then
  SEARCH_DIR=$DPL_OUTPUT/base2new/train_base/$RUN/DPLSearch/$SEARCH_CFG/seed$SEED
  dpl_search "search $DATASET base classes, seed $SEED" "$SEARCH_DIR" \
    "${COMMON[@]}" --trainer DPLSearch --config-file "configs/trainers/DPLSearch/$SEARCH_CFG.yaml" \
    DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base ${OVERRIDES[@]+"${OVERRIDES[@]}"}
  ARCH=(TRAINER.DPL.ARCH_FILE "$SEARCH_DIR/arch.json")
fi

dpl_train "train $DATASET base classes, seed $SEED" "$TRAIN_DIR" "${DPL_ARGS[@]}" \
  DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base ${ARCH[@]+"${ARCH[@]}"} ${GRAM[@]+"${GRAM[@]}"} \
  ${OVERRIDES[@]+"${OVERRIDES[@]}"}

SPLITS=(new)
if [[ ${DPL_TEST_BASE:-0} == 1 ]]; then
  SPLITS=(base new)
fi
for split in "${SPLITS[@]}"; do
  dpl_eval "evaluate $DATASET $split classes, seed $SEED" \
    "$DPL_OUTPUT/base2new/test_$split/$RUN/DPL/$TRAIN_CFG$GRAM_SUFFIX/seed$SEED" "$TRAIN_DIR" "${DPL_ARGS[@]}" \
    DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$split" ${ARCH[@]+"${ARCH[@]}"} ${GRAM[@]+"${GRAM[@]}"} \
    ${OVERRIDES[@]+"${OVERRIDES[@]}"}
done
