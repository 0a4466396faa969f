#!/usr/bin/env bash
# Hand-designed deep prompts (no search) trained by the DPL trainer: the baselines of the
# paper's question "searched or hand-designed?", on the same engine and schedule.
#
#   DATA=/path/to/datasets bash scripts/dpl/manual.sh DATASET SEED PRESET [SHOTS] [-- KEY VALUE ...]
#
#   DATASET  name of a configs/datasets/<DATASET>.yaml
#   SEED     random seed
#   PRESET   configs/trainers/DPL/manual_<PRESET>.yaml, one of
#              ivlp_2ctx_depth9        2 prompts in the first 9 blocks of both towers (IVLP)
#              vpt_8ctx_depth12_image  8 prompts in all 12 image blocks, none in text (VPT-deep)
#              text_2ctx_depth9        2 prompts in the first 9 text blocks, none in image
#              uniform_4ctx_depth12    4 prompts in every block of both towers
#            (a preset sets TRAINER.DPL.TEXT_LENGTHS / IMAGE_LENGTHS, one entry per block;
#            copy one to add your own)
#   SHOTS    training images per class (default 16)
#   -- KEY VALUE ...  config overrides passed to train.py as they are
#
# Environment: DATA (required), PYTHON (default python), DPL_OUTPUT (default output).
#
# Output (CoOp layout, next to the searched runs of few_shot.sh):
#   $DPL_OUTPUT/<DATASET>/DPL/manual_<PRESET>_<SHOTS>shots/seed<SEED>/  log.txt (test accuracy at the end)
# A finished run is skipped; an unfinished one resumes in its folder.
set -euo pipefail

USAGE="usage: DATA=/path/to/datasets bash $0 DATASET SEED PRESET [SHOTS=16] [-- KEY VALUE ...]"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
dpl_split_args 4 "$@"
dpl_init "${BASH_SOURCE[0]}"

if ((${#POSITIONAL[@]} < 3)); then
  dpl_usage_error "DATASET, SEED and PRESET are required"
fi
DATASET=${POSITIONAL[0]}
SEED=${POSITIONAL[1]}
PRESET=${POSITIONAL[2]}
SHOTS=${POSITIONAL[3]:-16}
CFG=manual_$PRESET
dpl_check_dataset "$DATASET"
dpl_check_int SEED "$SEED" 0
dpl_check_int SHOTS "$SHOTS" 1
if [[ ! -f configs/trainers/DPL/$CFG.yaml ]]; then
  presets=$(dpl_list_yaml configs/trainers/DPL | tr ' ' '\n' | sed -n 's/^manual_//p' | tr '\n' ' ')
  dpl_usage_error "unknown preset '$PRESET': no configs/trainers/DPL/$CFG.yaml; known presets: ${presets% }"
fi
dpl_require_data

dpl_train "manual $PRESET on $DATASET seed $SEED, $SHOTS shots" \
  "$DPL_OUTPUT/$DATASET/DPL/${CFG}_${SHOTS}shots/seed$SEED" \
  --root "$DATA" --seed "$SEED" --dataset-config-file "configs/datasets/$DATASET.yaml" \
  --trainer DPL --config-file "configs/trainers/DPL/$CFG.yaml" \
  DATASET.NUM_SHOTS "$SHOTS" ${OVERRIDES[@]+"${OVERRIDES[@]}"}
