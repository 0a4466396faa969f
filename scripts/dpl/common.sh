# Helpers shared by the DPL launchers in this folder. Sourced by them; not a launcher itself.
#
# Conventions of every launcher:
#   - it moves to the repository root, two folders above this one, so `train.py` and
#     `configs/` resolve the same way in this repository and in a CoOp/MaPLe checkout that
#     holds these scripts in `scripts/dpl/`;
#   - environment: DATA (dataset root, required), PYTHON (interpreter, default `python`),
#     DPL_OUTPUT (output root, default `output` in the repository root), DPL_GRAM_FILE (a GRAM
#     meta-initialisation, gram_meta_init.pt of scripts/gram/meta_train.py; default none);
#   - with DPL_GRAM_FILE, every DPL run (training and evaluation, never the DPLSearch search)
#     gets `TRAINER.DPL.GRAM_FILE <absolute path>` and the config part of its folder name the
#     suffix `+gram` (e.g. DPL/coop_16ctx_vit_b16_ep50+gram_16shots/), so "X + GRAM" has folders of
#     its own beside X's, which scripts/parse_results.py reads as a method of its own; a missing
#     file is refused before anything runs;
#   - the arguments after `--` go to train.py unchanged as KEY VALUE config overrides, after
#     the launcher's own keys (so they win);
#   - every stage goes through train.py, which compares the stage's config with the record
#     (run.json) of its folder: a finished run of the same config is skipped, an unfinished
#     one resumes from its last checkpoint, a folder of another config is an error that names
#     the differing keys. Whether a folder is finished is answered by
#     trainers/dpl_core/run_folder.py (result.json), the same definition as train.py's and
#     parse_results.py's.

# The suffix of a GRAM run's config in its folder name. `+` is no separator in the layouts
# parse_results.py reads, and no DPL config may end with it (dpl_check_not_gram), so a GRAM folder
# never names a config of its own. scripts/dpl/sweep.py and scripts/parse_results.py use the same.
DPL_GRAM_TAG=+gram

dpl_die() {
  echo "error: $*" >&2
  exit 2
}

# Print the launcher's USAGE text and an error, then exit.
dpl_usage_error() {
  echo "$USAGE" >&2
  dpl_die "$*"
}

# Absolute form of a path given relative to the caller's working directory, without `..`
# when the folder (or its parent) exists.
dpl_abspath() {
  if [[ -d $1 ]]; then
    (cd "$1" && pwd)
  elif [[ -d $(dirname "$1") ]]; then
    printf '%s/%s\n' "$(cd "$(dirname "$1")" && pwd)" "$(basename "$1")"
  else
    case $1 in
      /*) printf '%s\n' "$1" ;;
      *) printf '%s\n' "$PWD/$1" ;;
    esac
  fi
}

# dpl_init SCRIPT_PATH: resolve the environment against the caller's directory, then cd to
# the repository root DPL_ROOT (this folder is DPL_SCRIPTS). DATA, PYTHON and a given
# DPL_OUTPUT and DPL_GRAM_FILE are exported in absolute form, so launchers calling launchers see
# the same values. Sets GRAM (the KEY VALUE pair every DPL run gets, or nothing) and GRAM_SUFFIX
# (what the config part of a DPL folder name ends with: DPL_GRAM_TAG, or nothing).
dpl_init() {
  DPL_SCRIPTS=$(cd "$(dirname "$1")" && pwd)
  DPL_ROOT=$(cd "$DPL_SCRIPTS/../.." && pwd)
  PYTHON=${PYTHON:-python}
  if [[ -n ${DATA:-} ]]; then
    DATA=$(dpl_abspath "$DATA")
  fi
  export DATA PYTHON
  if [[ -n ${DPL_OUTPUT:-} ]]; then
    export DPL_OUTPUT
    DPL_OUTPUT=$(dpl_abspath "$DPL_OUTPUT")
  else
    DPL_OUTPUT=output  # not exported: launchers called from here choose the same default
  fi
  GRAM=()
  GRAM_SUFFIX=
  if [[ -n ${DPL_GRAM_FILE:-} ]]; then
    DPL_GRAM_FILE=$(dpl_abspath "$DPL_GRAM_FILE")
    if [[ ! -f $DPL_GRAM_FILE ]]; then
      dpl_die "DPL_GRAM_FILE=$DPL_GRAM_FILE is not a file: point it at the gram_meta_init.pt that scripts/gram/meta_train.py wrote for this prompt configuration"
    fi
    export DPL_GRAM_FILE
    GRAM=(TRAINER.DPL.GRAM_FILE "$DPL_GRAM_FILE")
    GRAM_SUFFIX=$DPL_GRAM_TAG
  fi
  cd "$DPL_ROOT"
  if [[ ! -f train.py ]]; then
    dpl_die "no train.py in $DPL_ROOT; keep this script in <repository>/scripts/dpl/"
  fi
}

# dpl_split_args MAX_POSITIONAL ARG...: sets the arrays POSITIONAL (before `--`) and
# OVERRIDES (after `--`), checking their counts.
dpl_split_args() {
  local max=$1
  shift
  POSITIONAL=()
  OVERRIDES=()
  while (($#)); do
    if [[ $1 == -- ]]; then
      shift
      OVERRIDES=("$@")
      break
    fi
    if [[ $1 =~ ^[A-Z][A-Z0-9_]*\.[A-Z0-9_.]+$ ]]; then
      dpl_usage_error "'$1' looks like a config key: put KEY VALUE overrides after '--'"
    fi
    POSITIONAL+=("$1")
    shift
  done
  if ((${#POSITIONAL[@]} > max)); then
    dpl_usage_error "expected at most $max arguments before '--', got ${#POSITIONAL[@]}: ${POSITIONAL[*]}"
  fi
  if ((${#OVERRIDES[@]} % 2)); then
    dpl_usage_error "the overrides after '--' must be KEY VALUE pairs, got an odd number of words (${#OVERRIDES[@]}): ${OVERRIDES[*]}"
  fi
  # As an override, a GRAM file would train into the plain run's folder, read as X without GRAM.
  local i
  for ((i = 0; i < ${#OVERRIDES[@]}; i += 2)); do
    if [[ ${OVERRIDES[i]} == TRAINER.DPL.GRAM_FILE ]]; then
      dpl_usage_error "give the GRAM file as DPL_GRAM_FILE=PATH, not as an override: the runs then go to '$DPL_GRAM_TAG' folders apart from the plain ones"
    fi
  done
}

# dpl_search_train_args DEFAULT_SEARCH_CFG DEFAULT_TRAIN_CFG: reads POSITIONAL as
# DATASET SEED [SHOTS=16] [SEARCH_CFG] [TRAIN_CFG], sets those variables and checks them.
dpl_search_train_args() {
  if ((${#POSITIONAL[@]} < 2)); then
    dpl_usage_error "DATASET and SEED are required"
  fi
  DATASET=${POSITIONAL[0]}
  SEED=${POSITIONAL[1]}
  SHOTS=${POSITIONAL[2]:-16}
  SEARCH_CFG=${POSITIONAL[3]:-$1}
  TRAIN_CFG=${POSITIONAL[4]:-$2}
  dpl_check_dataset "$DATASET"
  dpl_check_int SEED "$SEED" 0
  dpl_check_int SHOTS "$SHOTS" 1
  dpl_check_stages "$SEARCH_CFG" "$TRAIN_CFG"
}

# dpl_is_preset CFG: whether configs/trainers/DPL/CFG.yaml fixes its architecture, so that its run
# needs no search: it sets ARCH_FILE to a file under configs/architectures/ (the baselines, e.g.
# coop_16ctx_vit_b16_ep50) or sets TEXT_LENGTHS / IMAGE_LENGTHS (the manual_ presets). A search's
# arch.json given to such a config would replace its architecture (ARCH_FILE) or clash with it
# (lengths), so the launchers run a preset alone. scripts/dpl/sweep.py reads the yaml by the same rule.
dpl_is_preset() {
  grep -Eq "^[[:space:]]*(ARCH_FILE:[[:space:]]*[\"']?configs/architectures/|(TEXT|IMAGE)_LENGTHS:[[:space:]]*\[[[:space:]]*[0-9])" \
    "configs/trainers/DPL/$1.yaml"
}

# dpl_check_stages SEARCH_CFG TRAIN_CFG: either SEARCH_CFG '-' (no search) and a preset TRAIN_CFG,
# or a DPLSearch config and a DPL config of one recipe whose architecture the search supplies.
dpl_check_stages() {
  if [[ $1 != - ]]; then
    dpl_check_cfg DPLSearch "$1"
  fi
  dpl_check_cfg DPL "$2"
  if [[ $1 == - ]]; then
    if ! dpl_is_preset "$2"; then
      dpl_usage_error "TRAIN_CFG '$2' needs a search (it sets no ARCH_FILE under configs/architectures/ and no TEXT_LENGTHS/IMAGE_LENGTHS): give a SEARCH_CFG instead of '-'"
    fi
  elif dpl_is_preset "$2"; then
    dpl_usage_error "TRAIN_CFG '$2' is a preset (configs/trainers/DPL/$2.yaml fixes its architecture), so it takes no SEARCH_CFG: give '-' in place of '$1'"
  else
    dpl_check_recipes "$1" "$2"
  fi
}

# dpl_recipe CFG: the recipe a config name follows (README, "Where every hyper-parameter comes
# from"): paper or reference when the name holds that word between underscores (e.g.
# vit_b16_paper_ep40_batch4), ours otherwise. scripts/parse_results.py reads names by the same rule.
dpl_recipe() {
  case _$1_ in
    *_paper_*) echo paper ;;
    *_reference_*) echo reference ;;
    *) echo ours ;;
  esac
}

# dpl_check_recipes SEARCH_CFG TRAIN_CFG: both stages must follow one recipe. The training folder
# is named after TRAIN_CFG alone, so a search of another recipe would file its architecture's
# results under the training config's recipe.
dpl_check_recipes() {
  local search train
  search=$(dpl_recipe "$1")
  train=$(dpl_recipe "$2")
  if [[ $search != "$train" ]]; then
    dpl_usage_error "SEARCH_CFG '$1' follows recipe '$search' but TRAIN_CFG '$2' follows '$train': give both configs of one recipe (to combine stages of two recipes, copy both configs under names of your own)"
  fi
}

# dpl_check_int NAME VALUE MIN
dpl_check_int() {
  if [[ ! $2 =~ ^[0-9]+$ ]] || ((10#$2 < $3)); then
    dpl_usage_error "$1 must be an integer >= $3, got '$2'"
  fi
}

# dpl_check_dataset NAME: a dataset config configs/datasets/NAME.yaml must exist.
dpl_check_dataset() {
  if [[ ! -f configs/datasets/$1.yaml ]]; then
    dpl_usage_error "unknown dataset '$1': no configs/datasets/$1.yaml in $DPL_ROOT; known: $(dpl_list_yaml configs/datasets)"
  fi
}

# dpl_check_not_gram CFG: a DPL config name must not end with DPL_GRAM_TAG, whose folders are
# those of another config's GRAM runs.
dpl_check_not_gram() {
  if [[ $1 == *"$DPL_GRAM_TAG" ]]; then
    dpl_usage_error "'$1' ends in '$DPL_GRAM_TAG', which marks the folders of GRAM runs: give the config without it and set DPL_GRAM_FILE (rename a config of your own)"
  fi
}

# dpl_check_cfg TRAINER CFG: a trainer config configs/trainers/TRAINER/CFG.yaml must exist.
dpl_check_cfg() {
  if [[ $1 == DPL ]]; then
    dpl_check_not_gram "$2"
  fi
  if [[ ! -f configs/trainers/$1/$2.yaml ]]; then
    dpl_usage_error "unknown $1 config '$2': no configs/trainers/$1/$2.yaml; known: $(dpl_list_yaml "configs/trainers/$1")"
  fi
}

# Names of the yaml files in a folder, without extension, on one line.
dpl_list_yaml() {
  local f names=()
  for f in "$1"/*.yaml; do
    if [[ -f $f ]]; then
      f=${f##*/}
      names+=("${f%.yaml}")
    fi
  done
  echo "${names[*]:-none}"
}

# DATA must name an existing folder (the datasets live below it).
dpl_require_data() {
  if [[ -z ${DATA:-} ]]; then
    dpl_die "DATA is not set: export DATA=/path/to/datasets (the folder holding eurosat/, imagenet/, ...; see configs/datasets/*.yaml)"
  fi
  if [[ ! -d $DATA ]]; then
    dpl_die "DATA=$DATA is not a folder: point DATA at the folder holding the datasets"
  fi
}

# dpl_state DIR: finished, unfinished or empty (no folder, or nothing of a run in it).
dpl_state() {
  local line
  line=$("$PYTHON" -m trainers.dpl_core.run_folder "$1" 2>/dev/null) || true
  echo "${line%%:*}"
}

# dpl_train LABEL DIR TRAIN_PY_ARG...: run train.py into DIR; it skips a finished run of the
# same config, resumes an unfinished one and refuses a folder of another config.
dpl_train() {
  local label=$1 dir=$2 state
  shift 2
  state=$(dpl_state "$dir")
  case $state in
    finished) echo "[check] $label: $dir holds a finished run; train.py compares its config" ;;
    unfinished) echo "[resume] $label: unfinished run in $dir; train.py resumes it from its last checkpoint" ;;
    *) echo "[run] $label -> $dir" ;;
  esac
  if ! "$PYTHON" train.py --output-dir "$dir" "$@"; then
    dpl_die "$label: train.py failed (see above); nothing in $dir was overwritten"
  fi
  if [[ $(dpl_state "$dir") != finished ]]; then
    dpl_die "$label: train.py returned but $dir has no result.json"
  fi
  if [[ $state == finished ]]; then
    echo "[skip] $label: finished run of this config in $dir"
  fi
}

# dpl_search LABEL DIR TRAIN_PY_ARG...: as dpl_train, and the folder must end with arch.json.
dpl_search() {
  local label=$1 dir=$2
  dpl_train "$@"
  if [[ ! -f $dir/arch.json ]]; then
    dpl_die "$label: $dir finished without arch.json; delete the folder to search again"
  fi
}

# dpl_eval LABEL DIR MODEL_DIR TRAIN_PY_ARG...: evaluate the last saved checkpoint of the
# finished run in MODEL_DIR into DIR (skipped when DIR holds this evaluation, finished).
dpl_eval() {
  local label=$1 dir=$2 model_dir=$3
  shift 3
  if [[ $(dpl_state "$model_dir") != finished ]]; then
    dpl_die "$label: the model in $model_dir has not finished training"
  fi
  dpl_train "$label" "$dir" --eval-only --model-dir "$model_dir" "$@"
}
