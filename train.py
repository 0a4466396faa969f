"""Train or evaluate DPL with the command line of CoOp/MaPLe.

Example::

    python train.py --root $DATA --seed 1 --trainer DPLSearch \\
        --dataset-config-file configs/datasets/eurosat.yaml \\
        --config-file configs/trainers/DPLSearch/vit_b16_ep60_batch4.yaml \\
        --output-dir output/eurosat/DPLSearch/vit_b16_ep60_batch4_16shots/seed1 DATASET.NUM_SHOTS 16
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import traceback

# First: our package silences the pkg_resources deprecation warning that the clip package, and
# Dassl's WILDS dependency (outdated), would print at import.
import trainers.dpl_core  # noqa: F401  isort: skip
import torch
from dassl.config import get_cfg_default
from dassl.engine import TRAINER_REGISTRY, build_trainer
from dassl.utils import collect_env_info, set_random_seed, setup_logger

import datasets  # noqa: F401  (registers the dataset readers)
import trainers.dpl  # noqa: F401  (registers DPL)
import trainers.dpl_search  # noqa: F401  (registers DPLSearch)
from datasets.coop_format import DatasetError
from trainers.dpl_common import ImageReadError
from trainers.dpl_core.architecture import ArchitectureError
from trainers.dpl_core.clip_loader import CLIPLoadError
from trainers.dpl_core.config import ConfigError, add_dpl_config
from trainers.dpl_core.run_folder import RunFinished, RunFolderError, evaluation_of

# The project's own errors: their message says what was expected and where, so train.py prints
# it as one line (the traceback only with --debug or DPL_DEBUG=1).
KNOWN_ERRORS = (ConfigError, ArchitectureError, CLIPLoadError, DatasetError, ImageReadError, RunFolderError)


def print_args(args: argparse.Namespace, cfg) -> None:
    """Arguments and the resolved config, into the run's log as CoOp prints them."""
    print("***************\n** Arguments **\n***************")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************\n** Config **\n************")
    print(cfg)


def reset_cfg(cfg, args: argparse.Namespace) -> None:
    """Command-line flags override the yaml files (CoOp's order)."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed >= 0:  # seed 0 is a valid seed
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def extend_cfg(cfg) -> None:
    """Add every key of ``TRAINER.DPL``, ``TRAINER.DPLSEARCH`` and ``DATASET.SUBSAMPLE_CLASSES``."""
    add_dpl_config(cfg)


def setup_cfg(args: argparse.Namespace):
    """Defaults, ``extend_cfg``, dataset yaml, trainer yaml, flags, ``KEY VALUE`` overrides."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    for path, flag in ((args.dataset_config_file, "--dataset-config-file"), (args.config_file, "--config-file")):
        if path:
            if not osp.isfile(path):
                raise ConfigError(f"{flag}: no such file: {path}")
            merge_or_explain(cfg.merge_from_file, path, path)
    reset_cfg(cfg, args)
    merge_or_explain(cfg.merge_from_list, args.opts, "the command-line KEY VALUE overrides")
    cfg.freeze()
    return cfg


def merge_or_explain(merge, source, where: str) -> None:
    """Run a yacs merge; turn its bare errors into messages that say where the bad key came from."""
    try:
        merge(source)
    except (KeyError, ValueError, AssertionError) as error:
        # yacs reports an unknown key as a KeyError from files, an AssertionError from lists.
        message = str(error.args[0]) if error.args else type(error).__name__
        if "Non-existent" in message:
            message += (
                ". Check its spelling; DPL's keys are defined in trainers/dpl_core/config.py, "
                "Dassl's in dassl/config/defaults.py"
            )
        raise ConfigError(f"{where}: {message}") from None


def save_config(cfg) -> None:
    """Keep the resolved config next to the results (a resumed run rewrites the same content)."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    with open(osp.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
        f.write(cfg.dump())


def check_output_dir(cfg, args: argparse.Namespace) -> bool:
    """Compare the run asked for with what ``--output-dir`` holds, before anything is written.

    Returns True when the folder holds this very run, finished (nothing to do).

    Raises:
        RunFolderError: the folder holds a different run (keys and values named) or checkpoints
            of unknown origin; ``--eval-only`` without a model to evaluate.
    """
    evaluates = evaluation_of(args.model_dir, cfg.OUTPUT_DIR, args.load_epoch) if args.eval_only else None
    try:
        TRAINER_REGISTRY.get(cfg.TRAINER.NAME).claim_output_dir(cfg, evaluates)
    except RunFinished as finished:
        print(f"{finished}; nothing to do")
        return True
    return False


def run(args: argparse.Namespace) -> None:
    cfg = setup_cfg(args)
    if cfg.TRAINER.NAME not in ("DPL", "DPLSearch"):
        raise ConfigError(f"--trainer must be DPL or DPLSearch, got {cfg.TRAINER.NAME!r}")
    if not args.no_train and check_output_dir(cfg, args):
        return
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")
    if not args.eval_only:
        save_config(cfg)

    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


def main(argv: list[str] | None = None) -> None:
    """Run; a known error ends with ``error: <message>`` and exit status 1."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except KNOWN_ERRORS as error:
        if args.debug or os.environ.get("DPL_DEBUG") == "1":
            raise
        traceback.clear_frames(error.__traceback__)
        print(f"error: {error}", file=sys.stderr)
        print("(run with --debug or DPL_DEBUG=1 for the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=str, default="", help="dataset root ($DATA)")
    parser.add_argument("--output-dir", type=str, default="", help="run folder: log, checkpoints, results")
    parser.add_argument("--resume", type=str, default="", help="directory of checkpoints to resume from (default: the output directory)")
    parser.add_argument("--seed", type=int, default=-1, help="random seed; any value >= 0 (0 included) fixes it")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains (Dassl DA/DG runs)")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains (Dassl DA/DG runs)")
    parser.add_argument("--transforms", type=str, nargs="+", help="training transforms (overrides INPUT.TRANSFORMS)")
    parser.add_argument("--config-file", type=str, default="", help="trainer yaml (configs/trainers/...)")
    parser.add_argument("--dataset-config-file", type=str, default="", help="dataset yaml (configs/datasets/...)")
    parser.add_argument("--trainer", type=str, default="", help="DPLSearch or DPL")
    parser.add_argument("--backbone", type=str, default="", help="CLIP backbone, e.g. ViT-B/16")
    parser.add_argument("--head", type=str, default="", help="Dassl head name (unused by DPL)")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate a saved model")
    parser.add_argument("--model-dir", type=str, default="", help="output directory of the run to evaluate (--eval-only)")
    parser.add_argument("--load-epoch", type=int, help="epoch of the checkpoint to evaluate (default: the last saved)")
    parser.add_argument("--no-train", action="store_true", help="build the trainer but do not train")
    parser.add_argument("--debug", action="store_true", help="show the traceback of known errors (also DPL_DEBUG=1)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="trailing KEY VALUE config overrides")
    return parser


if __name__ == "__main__":
    main(sys.argv[1:])
