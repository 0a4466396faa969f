#!/usr/bin/env bash
# Hand-designed prompts (no search) trained by the DPL trainer, few-shot: DPL's own hand-designed
# deep prompts (the baselines of the paper's question "searched or hand-designed?", on the same
# engine and schedule) and the baselines the engine runs exactly (CoOp, VPT-deep, IVLP, MaPLe).
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
#            (a manual preset sets TRAINER.DPL.TEXT_LENGTHS / IMAGE_LENGTHS, one entry per
#            block; copy one to add your own)
#            or the name of any other configs/trainers/DPL/<PRESET>.yaml that fixes its
#            architecture with ARCH_FILE under configs/architectures/, e.g.
#              coop_16ctx_vit_b16_ep50 (_ep100, _ep200)  CoOp
#              vpt_deep_8ctx_depth12_ep5_batch4           VPT-deep
#              ivlp_2+2ctx_depth12_ep5_batch4             IVLP (ivlp_4ctx_text_only_depth12_ep5_batch4)
#              maple_2ctx_depth9_ep5_batch4               MaPLe
#   SHOTS    training images per class (default 16)
#   -- KEY VALUE ...  config overrides passed to train.py as they are
#
# Environment: DATA (required), PYTHON (default python), DPL_OUTPUT (default output),
# DPL_GRAM_FILE (a gram_meta_init.pt of scripts/gram/meta_train.py for this preset's prompts:
# the training starts from it, into a folder of its own).
#
# Output (CoOp layout, next to the searched runs of few_shot.sh; CFG = manual_<PRESET> or PRESET;
# G = +gram with DPL_GRAM_FILE, else nothing):
#   $DPL_OUTPUT/<DATASET>/DPL/<CFG>G_<SHOTS>shots/seed<SEED>/  log.txt (test accuracy at the end)
# the run of `few_shot.sh DATASET SEED SHOTS - CFG`, the same folder and command.
# A finished run is skipped; an unfinished one resumes in its folder. base2new.sh and
# cross_dataset.sh run presets in their protocols (SEARCH_CFG '-').
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
dpl_check_dataset "$DATASET"
dpl_check_int SEED "$SEED" 0
dpl_check_int SHOTS "$SHOTS" 1
dpl_check_not_gram "$PRESET"
# A manual preset is named without its manual_ prefix, any other preset by its config name.
if [[ -f configs/trainers/DPL/manual_$PRESET.yaml ]]; then
  CFG=manual_$PRESET
elif [[ -f configs/trainers/DPL/$PRESET.yaml ]]; then
  CFG=$PRESET
  if ! dpl_is_preset "$CFG"; then
    dpl_usage_error "'$PRESET' is not a preset: configs/trainers/DPL/$PRESET.yaml sets no ARCH_FILE under configs/architectures/ and no TEXT_LENGTHS/IMAGE_LENGTHS, so it needs a search (few_shot.sh)"
  fi
else
  manual=() fixed=()
  for name in $(dpl_list_yaml configs/trainers/DPL); do
    if [[ $name == manual_* ]]; then
      manual+=("${name#manual_}")
    elif dpl_is_preset "$name"; then
      fixed+=("$name")
    fi
  done
  dpl_usage_error "unknown preset '$PRESET': no configs/trainers/DPL/manual_$PRESET.yaml or $PRESET.yaml; known presets: ${manual[*]-} ${fixed[*]-}"
fi
dpl_require_data

dpl_train "manual $PRESET on $DATASET seed $SEED, $SHOTS shots" \
  "$DPL_OUTPUT/$DATASET/DPL/${CFG}${GRAM_SUFFIX}_${SHOTS}shots/seed$SEED" \
  --root "$DATA" --seed "$SEED" --dataset-config-file "configs/datasets/$DATASET.yaml" \
  --trainer DPL --config-file "configs/trainers/DPL/$CFG.yaml" \
  DATASET.NUM_SHOTS "$SHOTS" ${GRAM[@]+"${GRAM[@]}"} ${OVERRIDES[@]+"${OVERRIDES[@]}"}
