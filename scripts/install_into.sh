#!/usr/bin/env bash
# Add DPL to an existing CoOp or MaPLe checkout, or take it out again.
#
# Usage: scripts/install_into.sh PATH_TO_CHECKOUT [--dry-run] [--uninstall]
#                                 [--fix-dassl-warmup | --unfix-dassl-warmup]
#
# Copies into the checkout (run this script from the DPL repository, never from the host):
#   trainers/dpl_core/, trainers/gram/, trainers/dpl_common.py, trainers/dpl_search.py, trainers/dpl.py
#   configs/trainers/DPLSearch/, configs/trainers/DPL/, configs/architectures/ (the presets' arch.json files)
#   scripts/dpl/ (launchers) plus scripts/parse_results.py, scripts/plot_search.py and
#   scripts/plot_tokens.py into scripts/dpl/ (the host's scripts stay)
#   datasets/synthetic.py, datasets/coop_format.py and configs/datasets/synthetic.yaml, only
#   when the host has no synthetic reader of its own. The other dataset readers are never
#   copied: the host's readers register the same names, and a second registration would crash.
# and adds one import line to the host's train.py, after its last `import trainers.` line
# (train.py is first saved as train.py.dpl-backup). Our config keys need no edit of the host's
# extend_cfg: importing trainers.dpl adds them to Dassl's defaults, leaving host keys alone.
#
# Every installed file is listed with its SHA-256 in .dpl_install_manifest. That makes a
# re-install idempotent (unchanged files are left alone, files we installed earlier are
# updated) and lets --uninstall remove exactly what was installed. A file at one of our paths
# that we did not install, or that was edited since, is a conflict: nothing is changed and the
# conflicts are listed.
#
# --dry-run prints the plan and changes nothing. --uninstall removes the listed files (files
# edited since the install are kept, with a warning), our import lines (other edits of train.py
# stay), folders we created once empty, and the manifest; train.py.dpl-backup is kept.
#
# --fix-dassl-warmup (opt-in, never applied otherwise) also repairs stock Dassl 0.6.3 on new
# torch for the host's OWN trainers (CoOp, MaPLe, IVLP, VPT, ...), without editing Dassl: it
# copies trainers/dpl_dassl_fix.py and adds `import trainers.dpl_dassl_fix` to train.py, right
# after our import line. Importing it (see that file) lets Dassl's warm-up schedulers build on
# torch >= 2.7, whose LRScheduler no longer takes `verbose` (same schedule), and, on torch >= 2.6,
# lets Dassl's load_checkpoint unpickle its own checkpoints again (weights_only=False: load only
# checkpoints you trust). Each part acts only on the torch versions that need it. The choice
# is recorded in the manifest, so re-installs keep it; --unfix-dassl-warmup removes the file
# and the line again (train.py is then byte for byte what it was before the fix), and so does
# --uninstall. DPL's own trainers do not need the fix.
#
# Exit status: 0 done (or nothing to do), 1 refused or failed, 2 bad usage.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PROG=scripts/install_into.sh
MANIFEST=.dpl_install_manifest
BACKUP=train.py.dpl-backup
MARK="# DPL: added by $PROG"
FIX_MODULE=trainers/dpl_dassl_fix.py
FIX_OPTION=fix-dassl-warmup  # the manifest line "option<TAB>fix-dassl-warmup" records the choice
FIX_MARK="# DPL: Dassl fix added by $PROG --$FIX_OPTION"
FIX_LINE="import trainers.dpl_dassl_fix  $FIX_MARK"
# Host lines after which our import goes (its trainer imports).
TRAINER_IMPORT='^(import[[:space:]]+trainers\.|from[[:space:]]+trainers([.[:space:]]))'

usage() {
    sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    echo "See the header of $PROG for what is copied where."
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

TARGET=""
DRY_RUN=0
UNINSTALL=0
FIX_REQUEST=""  # fix | unfix | empty: keep what the manifest records
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --fix-dassl-warmup | --unfix-dassl-warmup)
            request=${arg#--}
            request=${request%-dassl-warmup}
            if [[ -n "$FIX_REQUEST" && "$FIX_REQUEST" != "$request" ]]; then
                usage >&2; echo "$PROG: --fix-dassl-warmup and --unfix-dassl-warmup exclude each other" >&2; exit 2
            fi
            FIX_REQUEST=$request ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; echo "$PROG: unknown option $arg" >&2; exit 2 ;;
        *)
            if [[ -n "$TARGET" ]]; then
                usage >&2; echo "$PROG: expected one checkout path, got '$TARGET' and '$arg'" >&2; exit 2
            fi
            TARGET=$arg ;;
    esac
done
if [[ -z "$TARGET" ]]; then
    usage >&2
    exit 2
fi
if ((UNINSTALL)) && [[ -n "$FIX_REQUEST" ]]; then
    usage >&2; echo "$PROG: --uninstall takes the Dassl fix out too; give it alone" >&2; exit 2
fi
[[ -d "$TARGET" ]] || die "$TARGET is not a directory (expected the root of a CoOp or MaPLe checkout)"
TARGET=$(cd "$TARGET" && pwd -P)
[[ "$TARGET" != "$SRC" ]] || die "$TARGET is the DPL repository itself; give the path of a CoOp or MaPLe checkout"
cd "$TARGET"

if command -v sha256sum > /dev/null; then
    checksum() { sha256sum -- "$1" | cut -d' ' -f1; }
else  # macOS
    checksum() { shasum -a 256 -- "$1" | cut -d' ' -f1; }
fi

# ----- manifest: "file<TAB>sha256<TAB>path", "dir<TAB>path" (folders we created) -------------

manifest_hash() {  # the recorded checksum of $1, empty when the manifest does not list it
    [[ -f "$MANIFEST" ]] || return 0
    awk -F'\t' -v p="$1" '$1 == "file" && $3 == p { print $2 }' "$MANIFEST"
}

manifest_dir() {  # success when the manifest lists folder $1 as created by us
    [[ -f "$MANIFEST" ]] && awk -F'\t' -v p="$1" '$1 == "dir" && $2 == p { found = 1 } END { exit !found }' "$MANIFEST"
}

manifest_option() {  # success when the manifest records option $1
    [[ -f "$MANIFEST" ]] && awk -F'\t' -v o="$1" '$1 == "option" && $2 == o { found = 1 } END { exit !found }' "$MANIFEST"
}

ours_unmodified() {  # success when $1 was installed by us and has not been edited since
    local recorded
    recorded=$(manifest_hash "$1")
    [[ -n "$recorded" && -f "$1" && "$(checksum "$1")" == "$recorded" ]]
}

say() {  # one plan line: action, path, optional note
    printf '  %-10s %s%s\n' "$1" "$2" "${3:+  ($3)}"
}

remove_installed() {  # delete file $1 and Python's byte code of it (so its folder can empty)
    rm -f -- "$1"
    rm -f -- "$(dirname "$1")/__pycache__/$(basename "$1" .py)".*.pyc
}

# ----- uninstall -------------------------------------------------------------------------------

remove_import_line() {  # writes train.py without our marked lines to stdout
    awk -v mark="$MARK" -v fix="$FIX_MARK" 'index($0, mark) == 0 && index($0, fix) == 0' train.py
}

our_lines() {  # our marked lines of train.py, in order
    grep -F -e "$MARK" -e "$FIX_MARK" train.py || true
}

replace_train_py() {  # train.py gets the content of file $1, in place (keeps its mode and owner)
    if [[ -s train.py && -n "$(tail -c 1 train.py)" ]]; then
        # awk ended every line with a newline; the host's last line had none, so neither does ours
        printf '%s' "$(cat -- "$1")" > train.py
    else
        cat -- "$1" > train.py
    fi
}

uninstall() {
    [[ -f "$MANIFEST" ]] || die "no DPL install found in $TARGET (no $MANIFEST); nothing to uninstall"
    if ((DRY_RUN)); then
        echo "Dry run: plan to uninstall DPL from $TARGET (nothing is changed)"
    else
        echo "Uninstalling DPL from $TARGET"
    fi
    local kind hash path kept=0
    while IFS=$'\t' read -r kind hash path; do
        [[ "$kind" == file ]] || continue
        if [[ ! -e "$path" ]]; then
            say gone "$path" "already removed"
        elif [[ "$(checksum "$path")" != "$hash" ]]; then
            say keep "$path" "edited since the install; delete it yourself if you do not need it"
            kept=1
        else
            say remove "$path"
            ((DRY_RUN)) || remove_installed "$path"
        fi
    done < "$MANIFEST"
    if [[ -f train.py && -n "$(our_lines)" ]]; then
        say edit train.py "remove the DPL import lines $(grep -nF -e "$MARK" -e "$FIX_MARK" train.py | cut -d: -f1 | paste -sd, -)"
        if ((!DRY_RUN)); then
            local edited
            edited=$(mktemp)
            remove_import_line > "$edited"
            replace_train_py "$edited"
            rm -f "$edited"
        fi
    else
        say edit train.py "no DPL import line found; nothing to remove"
    fi
    local dir
    while IFS= read -r dir; do
        [[ -d "$dir" ]] || continue
        if ((!DRY_RUN)); then
            rm -rf -- "$dir/__pycache__"
            if rmdir -- "$dir" 2> /dev/null; then
                say rmdir "$dir/"
            else
                say keep "$dir/" "holds files that were not installed by us"
            fi
        else
            say rmdir "$dir/" "if empty"
        fi
    done < <(awk -F'\t' '$1 == "dir" { print $2 }' "$MANIFEST" | sort -r)
    say remove "$MANIFEST"
    if ((DRY_RUN)); then
        echo "Dry run: nothing changed."
        return
    fi
    rm -f -- "$MANIFEST"
    [[ ! -f "$BACKUP" ]] || echo "Kept $BACKUP (train.py before the first install); delete it when you no longer need it."
    ((kept == 0)) || echo "Some files were kept because they were edited after the install (see 'keep' above)."
    echo "DPL uninstalled."
}

if ((UNINSTALL)); then
    uninstall
    exit 0
fi
if [[ "$FIX_REQUEST" == unfix && ! -f "$MANIFEST" ]]; then
    die "no DPL install found in $TARGET (no $MANIFEST); there is no Dassl fix to take out"
fi

# ----- is this a CoOp/MaPLe checkout? ------------------------------------------------------------

problems=()
if [[ ! -f train.py ]]; then
    problems+=("no train.py")
else
    grep -q 'extend_cfg' train.py || problems+=("train.py has no extend_cfg")
    grep -qE "$TRAINER_IMPORT" train.py || problems+=("train.py has no 'import trainers.<name>' line")
fi
[[ -f trainers/__init__.py ]] || problems+=("no trainers/ package (trainers/__init__.py)")
[[ -d clip || -d configs ]] || problems+=("neither a clip/ nor a configs/ folder")
if ((${#problems[@]})); then
    printf -v listed '\n  - %s' "${problems[@]}"
    die "$TARGET does not look like a CoOp or MaPLe checkout:$listed
Expected its root: train.py (with extend_cfg and 'import trainers.<name>' lines), a trainers/ package and a clip/ or configs/ folder."
fi
[[ -f "$SRC/trainers/dpl.py" ]] || die "$SRC is not a complete DPL repository (no trainers/dpl.py)"

# ----- the plan: source -> destination pairs ----------------------------------------------------

PLAN_SRC=()
PLAN_DST=()

plan() {  # plan SOURCE_PATH DESTINATION_PATH (both relative to their repository)
    PLAN_SRC+=("$1")
    PLAN_DST+=("$2")
}

plan_tree() {  # plan every regular file below SOURCE_DIR into DESTINATION_DIR, caches excluded
    local file
    [[ -d "$SRC/$1" ]] || return 0
    while IFS= read -r file; do
        plan "$1/$file" "$2/$file"
    done < <(cd "$SRC/$1" && find . -type f ! -name '.*' ! -name '*.pyc' ! -path '*/__pycache__/*' | sed 's|^\./||' | LC_ALL=C sort)
}

plan_tree trainers/dpl_core trainers/dpl_core
plan_tree trainers/gram trainers/gram
plan trainers/dpl_common.py trainers/dpl_common.py
plan trainers/dpl_search.py trainers/dpl_search.py
plan trainers/dpl.py trainers/dpl.py
plan_tree configs/trainers/DPLSearch configs/trainers/DPLSearch
plan_tree configs/trainers/DPL configs/trainers/DPL
plan_tree configs/architectures configs/architectures
plan_tree scripts/dpl scripts/dpl
plan scripts/parse_results.py scripts/dpl/parse_results.py
plan scripts/plot_search.py scripts/dpl/plot_search.py
plan scripts/plot_tokens.py scripts/dpl/plot_tokens.py

# The Dassl fix: asked for now, or recorded by an earlier install and not taken back.
if [[ "$FIX_REQUEST" == fix ]] || { [[ -z "$FIX_REQUEST" ]] && manifest_option "$FIX_OPTION"; }; then
    FIX=1
    plan "$FIX_MODULE" "$FIX_MODULE"
else
    FIX=0
fi

# A trainer of the host registered as DPL or DPLSearch would clash with ours in Dassl's registry.
clashing_trainers=()
for file in trainers/*.py; do
    [[ -f "$file" && -z "$(manifest_hash "$file")" ]] || continue
    case "$file" in trainers/dpl.py | trainers/dpl_search.py | trainers/dpl_common.py) continue ;; esac
    if grep -qE '^class (DPL|DPLSearch)[(:[:space:]]' "$file"; then
        clashing_trainers+=("$file")
    fi
done

host_own() {  # success when $1 exists and is neither ours (per manifest) nor identical to our $2
    [[ -e "$1" ]] || return 1
    ours_unmodified "$1" && return 1
    [[ -f "$1" && -f "$SRC/$2" ]] && cmp -s "$1" "$SRC/$2" && return 1
    return 0
}

# The synthetic reader comes with the base classes it builds on (datasets/coop_format.py,
# which registers nothing) and its config; all three or none.
SYNTHETIC_FILES=(datasets/synthetic.py datasets/coop_format.py configs/datasets/synthetic.yaml)
synthetic_skip=""
if [[ ! -f datasets/__init__.py ]]; then
    synthetic_skip="the host has no datasets/ package"
else
    for file in "${SYNTHETIC_FILES[@]}"; do
        if host_own "$file" "$file"; then
            synthetic_skip="the host has its own $file"
            break
        fi
    done
    if [[ -z "$synthetic_skip" ]]; then
        for file in datasets/*.py; do
            [[ -f "$file" && "$file" != datasets/synthetic.py && -z "$(manifest_hash "$file")" ]] || continue
            if grep -qE '^class Synthetic[(:[:space:]]' "$file"; then
                synthetic_skip="$file defines a Synthetic dataset"
                break
            fi
        done
    fi
fi
if [[ -z "$synthetic_skip" ]]; then
    for file in "${SYNTHETIC_FILES[@]}"; do
        plan "$file" "$file"
    done
    IMPORT_LINE="import trainers.dpl, trainers.dpl_search, datasets.synthetic  $MARK"
else
    IMPORT_LINE="import trainers.dpl, trainers.dpl_search  $MARK"
fi

# ----- classify every planned file ------------------------------------------------------------

ACTIONS=()  # add | update | unchanged, parallel to PLAN_DST
conflicts=()
for i in "${!PLAN_DST[@]}"; do
    src="$SRC/${PLAN_SRC[$i]}"
    dst=${PLAN_DST[$i]}
    if [[ -d "$dst" ]]; then
        conflicts+=("$dst is a folder; DPL would write a file there")
        ACTIONS+=(conflict)
    elif [[ ! -e "$dst" && ! -L "$dst" ]]; then
        ACTIONS+=(add)
    elif [[ -f "$dst" ]] && cmp -s "$src" "$dst"; then
        ACTIONS+=(unchanged)
    elif ours_unmodified "$dst"; then
        ACTIONS+=(update)
    else
        if [[ -n "$(manifest_hash "$dst")" ]]; then
            conflicts+=("$dst was installed by DPL but edited since")
        else
            conflicts+=("$dst exists and was not installed by DPL")
        fi
        ACTIONS+=(conflict)
    fi
done
for file in "${clashing_trainers[@]+"${clashing_trainers[@]}"}"; do
    conflicts+=("$file defines a trainer class named DPL or DPLSearch (Dassl's registry allows one of each)")
done
if ((${#conflicts[@]})); then
    printf -v listed '\n  - %s' "${conflicts[@]}"
    die "not installing into $TARGET, it has files DPL would overwrite:$listed
Nothing was changed. Move these files away (or uninstall an older DPL with --uninstall) and run again."
fi

# Files of an earlier install that this version no longer ships.
STALE=()
STALE_KEEP=()
if [[ -f "$MANIFEST" ]]; then
    while IFS=$'\t' read -r kind hash path; do
        [[ "$kind" == file && -e "$path" ]] || continue
        for dst in "${PLAN_DST[@]}"; do
            [[ "$dst" == "$path" ]] && continue 2
        done
        if [[ "$(checksum "$path")" == "$hash" ]]; then
            STALE+=("$path")
        else
            STALE_KEEP+=("$path")
        fi
    done < "$MANIFEST"
fi

# Folders we create now, or created in an earlier install: uninstall removes them when empty.
OUR_DIRS=()
add_our_dir() {
    local d
    for d in "${OUR_DIRS[@]+"${OUR_DIRS[@]}"}"; do
        [[ "$d" == "$1" ]] && return 0
    done
    OUR_DIRS+=("$1")
}
if [[ -f "$MANIFEST" ]]; then
    while IFS=$'\t' read -r kind dir; do
        [[ "$kind" != dir || ! -d "$dir" ]] || add_our_dir "$dir"
    done < "$MANIFEST"
fi
for dst in "${PLAN_DST[@]}"; do
    dir=$(dirname "$dst")
    while [[ "$dir" != . ]]; do
        if [[ ! -d "$dir" ]] || manifest_dir "$dir"; then
            add_our_dir "$dir"
        fi
        dir=$(dirname "$dir")
    done
done

# ----- the train.py edit ----------------------------------------------------------------------

OUR_LINES=$IMPORT_LINE  # what train.py should hold of ours, in this order
((!FIX)) || OUR_LINES+=$'\n'"$FIX_LINE"
if [[ "$(our_lines)" == "$OUR_LINES" ]]; then
    IMPORT_ACTION=unchanged
elif [[ -n "$(our_lines)" ]]; then
    IMPORT_ACTION=update
else
    IMPORT_ACTION=add
fi

edited_train_py() {  # train.py with exactly our lines, after the host's last trainer import
    local without last
    without=$(mktemp)
    remove_import_line > "$without"
    last=$(grep -nE "$TRAINER_IMPORT" "$without" | tail -n 1 | cut -d: -f1)
    # Through the environment: awk -v would read escapes and may refuse the newline between lines.
    OUR_LINES=$OUR_LINES awk -v n="$last" '{ print } NR == n { print ENVIRON["OUR_LINES"] }' "$without"
    rm -f "$without"
}

# ----- the manifest this install leaves --------------------------------------------------------

manifest_text() {
    local i d
    echo "# DPL drop-in: files installed by $PROG from $SRC (used by re-installs and --uninstall)"
    ((!FIX)) || printf 'option\t%s\n' "$FIX_OPTION"
    for d in "${OUR_DIRS[@]+"${OUR_DIRS[@]}"}"; do
        printf 'dir\t%s\n' "$d"
    done
    for i in "${!PLAN_DST[@]}"; do
        printf 'file\t%s\t%s\n' "$(checksum "$SRC/${PLAN_SRC[$i]}")" "${PLAN_DST[$i]}"
    done
}
NEW_MANIFEST=$(manifest_text)

# ----- report, then act -----------------------------------------------------------------------

changes=0
if ((DRY_RUN)); then
    echo "Dry run: plan to install DPL from $SRC into $TARGET (nothing is changed)"
else
    echo "Installing DPL from $SRC into $TARGET"
fi
for i in "${!PLAN_DST[@]}"; do
    say "${ACTIONS[$i]}" "${PLAN_DST[$i]}" "$([[ "${PLAN_SRC[$i]}" == "${PLAN_DST[$i]}" ]] || echo "from ${PLAN_SRC[$i]}")"
    [[ "${ACTIONS[$i]}" == unchanged ]] || changes=1
done
[[ -z "$synthetic_skip" ]] || say skip "datasets/synthetic.py" "$synthetic_skip; use the host's datasets"
for path in "${STALE[@]+"${STALE[@]}"}"; do
    if [[ "$path" == "$FIX_MODULE" ]]; then
        say remove "$path" "the Dassl fix is taken out"
    else
        say remove "$path" "installed earlier, no longer shipped"
    fi
    changes=1
done
for path in "${STALE_KEEP[@]+"${STALE_KEEP[@]}"}"; do
    say keep "$path" "installed earlier and edited since; no longer managed by DPL"
    changes=1
done
case "$IMPORT_ACTION" in
    unchanged) say unchanged train.py "import lines present" ;;
    *)
        shown=${IMPORT_LINE%%  #*}
        ((!FIX)) || shown+="; ${FIX_LINE%%  #*}"
        say edit train.py "$IMPORT_ACTION lines after the last trainer import: $shown"
        changes=1
        [[ -e "$BACKUP" ]] || say backup "$BACKUP" "train.py as it is now"
        ;;
esac
if [[ ! -f "$MANIFEST" || "$(cat "$MANIFEST")" != "$NEW_MANIFEST" ]]; then
    say write "$MANIFEST" "what was installed, with checksums"
    changes=1
fi

if ((DRY_RUN)); then
    echo "Dry run: nothing changed."
    exit 0
fi
if ((!changes)); then
    echo "Nothing to do: DPL is installed and up to date."
    exit 0
fi

for i in "${!PLAN_DST[@]}"; do
    case "${ACTIONS[$i]}" in
        add | update)
            mkdir -p -- "$(dirname "${PLAN_DST[$i]}")"
            # A new file takes the source's mode (less the umask): launchers stay executable.
            cp -- "$SRC/${PLAN_SRC[$i]}" "${PLAN_DST[$i]}.dpl-tmp"
            mv -f -- "${PLAN_DST[$i]}.dpl-tmp" "${PLAN_DST[$i]}"
            ;;
    esac
done
for path in "${STALE[@]+"${STALE[@]}"}"; do
    remove_installed "$path"
done
if [[ "$IMPORT_ACTION" != unchanged ]]; then
    [[ -e "$BACKUP" ]] || cp -p -- train.py "$BACKUP"
    edited=$(mktemp)
    edited_train_py > "$edited"
    replace_train_py "$edited"
    rm -f "$edited"
fi

printf '%s\n' "$NEW_MANIFEST" > "$MANIFEST.dpl-tmp"
mv -f -- "$MANIFEST.dpl-tmp" "$MANIFEST"

echo "Done. The host's train.py now knows the trainers DPLSearch and DPL. From $TARGET, e.g.:"
echo "  DATA=/path/to/datasets bash scripts/dpl/few_shot.sh eurosat 1"
echo "  python scripts/dpl/parse_results.py output"
if ((FIX)); then
    echo "The host's trainers run with the Dassl fix (warm-up schedulers, checkpoint loading; see $FIX_MODULE)."
    echo "Take only the fix out with: $SRC/$PROG $TARGET --unfix-dassl-warmup"
fi
echo "Undo with: $SRC/$PROG $TARGET --uninstall"
