#!/usr/bin/env python
"""GRAM meta-training (a reconstruction): learn a prompt initialisation and a gradient regulator
for one prompt configuration from image-caption pairs.

    python scripts/gram/meta_train.py --manifest pairs.tsv --features FEATURES_DIR --hierarchy hierarchy.json \\
        --arch-file configs/architectures/coop_16ctx.json --output output/gram/coop_16ctx [--clip-checkpoint FILE]

Inputs come from the earlier steps: the manifest (``datasets/image_captions.py``), the frozen
CLIP's feature cache (``scripts/gram/cache_features.py``) and the cross-modal hierarchy
(``scripts/gram/cluster.py``). Each outer step draws ``--tasks`` tasks (support and query pairs
from two leaves, ``TaskSampler``), takes the meta-objective of ``trainers/gram/meta.py`` (one
regulated inner step, first order in the prompts unless ``--second-order``, exact in the
regulator), clips the prompts' and the regulator's gradients to norm ``--clip`` each and takes
one Adam step on both (cosine schedules). An architecture without image prompts reads the
images' cached features instead of running the image tower.

The output folder holds ``run.json`` (what the run is: every setting and the SHA-256 of its
inputs; a folder made by other settings is refused), ``checkpoint.pt`` (written atomically every
``--checkpoint-every`` steps: a cut-off run continues from it and ends as an uninterrupted one),
TensorBoard scalars and, at the end, ``gram_meta_init.pt`` for ``TRAINER.DPL.GRAM_FILE``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trainers.dpl_core.run_folder import read_json, sha256_file, write_json  # noqa: E402  (first: quiets clip)

import clip  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import Tensor  # noqa: E402

from datasets.image_captions import ImageCaptions, ManifestError, read_image_captions  # noqa: E402
from trainers.dpl_core.architecture import ArchitectureError, PromptArchitecture  # noqa: E402
from trainers.dpl_core.clip_loader import CLIPLoadError, load_clip, resolve_checkpoint  # noqa: E402
from trainers.dpl_core.prompted_clip import PromptedCLIP, tower_depths, truncate_tokens  # noqa: E402
from trainers.gram.features import FeatureCacheError, clip_preprocess, index_sha256, load_features  # noqa: E402
from trainers.gram.hierarchy import Hierarchy, HierarchyError, TaskSampler  # noqa: E402
from trainers.gram.meta import learned_tensors, meta_inputs, meta_loss, save_meta_init  # noqa: E402
from trainers.gram.regulator import FORMS, GradientRegulator  # noqa: E402

logger = logging.getLogger("gram.meta_train")
RECORD, CHECKPOINT, OUTPUT = "run.json", "checkpoint.pt", "gram_meta_init.pt"
# Settings that cannot change the result (where it runs, how often it reports).
NOT_RECORDED = ("output", "device", "checkpoint_every", "val_every", "log_level")


class MetaTrainError(ValueError):
    """Settings or inputs meta-training cannot run with; one line."""


class TaskData:
    """The tensors of a task's pairs: images (or their cached features) and caption tokens."""

    def __init__(self, args: argparse.Namespace, pairs: ImageCaptions, model: PromptedCLIP, uses_images: bool,
                 device: torch.device) -> None:  # fmt: skip
        self.pairs = pairs
        self.uses_images, self.device = uses_images, device
        self.image_features = None if uses_images else load_features(args.features)[0]
        if self.image_features is not None and len(self.image_features) != len(self.pairs):
            raise MetaTrainError(f"--features holds {len(self.image_features)} pairs but --manifest {len(self.pairs)}")
        self.preprocess = clip_preprocess(model.clip_model.visual.input_resolution)
        context = model.clip_model.positional_embedding.shape[0]
        self.context = context - model.schedules["text"][0].positional  # room left by the positional prompt tokens
        self.template = args.caption_template

    def __call__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """``(images [n, 3, R, R] or image features [n, D], captions [n, L])`` of pairs ``indices``."""
        captions = [self.template.format(self.pairs.captions[i]) for i in indices]
        tokens = truncate_tokens(clip.tokenize(captions, context_length=self.context, truncate=True))
        if self.uses_images:
            images = torch.stack([self.preprocess(Image.open(self.pairs.paths[i]).convert("RGB")) for i in indices])
        else:
            images = self.image_features[torch.as_tensor(indices)].float()
        return images.to(self.device), tokens.to(self.device)


def run_record(args: argparse.Namespace, clip_file: str, pairs: ImageCaptions, arch: PromptArchitecture) -> dict[str, Any]:
    if not os.path.isdir(args.features):
        raise MetaTrainError(f"--features {args.features}: not a folder (expected the cache of scripts/gram/cache_features.py)")
    if not os.path.isfile(args.hierarchy):
        raise MetaTrainError(f"--hierarchy {args.hierarchy}: not found (expected the JSON of scripts/gram/cluster.py)")
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in NOT_RECORDED}
    inputs = {"manifest_sha256": pairs.sha256(), "features_index_sha256": index_sha256(args.features),
              "hierarchy_sha256": sha256_file(args.hierarchy), "clip_sha256": sha256_file(clip_file)}  # fmt: skip
    return {"format": "gram-meta-train-run", "settings": settings, "inputs": inputs, "architecture": arch.to_dict()}


def claim(folder: Path, record: dict[str, Any]) -> None:
    """Make ``folder`` this run's, or refuse (naming the differing entries) without touching it."""
    recorded = read_json(folder / RECORD)
    if recorded is None:
        if (folder / CHECKPOINT).exists() or (folder / OUTPUT).exists():
            raise MetaTrainError(f"{folder} holds a meta-training of unknown settings (no {RECORD}); choose another --output")
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / RECORD, record)
        return
    changed = [f"{section}.{key}: {json.dumps(recorded.get(section, {}).get(key))} -> {json.dumps(record[section].get(key))}"
               for section in ("settings", "inputs") for key in sorted(set(record[section]) | set(recorded.get(section, {})))
               if recorded.get(section, {}).get(key) != record[section].get(key)]  # fmt: skip
    if recorded.get("architecture") != record["architecture"]:
        changed.append("architecture: another --arch-file content")
    if changed:
        raise MetaTrainError(f"{folder} holds a meta-training with other settings; nothing was changed: " + "; ".join(changed))


def cosine(step: int, total: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * step / total))


def meta_train(args: argparse.Namespace, on_step: Callable[[int], None] | None = None) -> Path:
    """Run (or continue) the meta-training ``args`` describe; returns the output file."""
    folder = Path(args.output)
    device = torch.device(args.device)
    try:
        clip_file = resolve_checkpoint(args.backbone, args.clip_checkpoint, None)
        arch = PromptArchitecture.load(args.arch_file)
    except (CLIPLoadError, ArchitectureError) as error:
        raise MetaTrainError(str(error)) from None
    if any(g.per_class for g in arch.text_groups):
        raise MetaTrainError(f"{args.arch_file}: per-class tokens have no classes to meta-train on (captions are the classes)")
    pairs = read_image_captions(args.manifest)
    record = run_record(args, clip_file, pairs, arch)
    if (folder / OUTPUT).exists() and read_json(folder / RECORD) == record:
        logger.info("%s already holds this finished meta-training", folder)
        return folder / OUTPUT
    claim(folder, record)

    torch.manual_seed(args.seed)
    clip_model = load_clip(args.backbone, args.clip_checkpoint, None)
    try:
        arch.check_fits(*tower_depths(clip_model))
    except ArchitectureError as error:
        raise MetaTrainError(f"{args.arch_file}: {error}") from None
    model = PromptedCLIP.fixed(clip_model, arch).to(device)
    theta = learned_tensors(model)
    if not theta:
        raise MetaTrainError(f"{args.arch_file}: the architecture has no learned prompt tensors")
    regulator = GradientRegulator({n: tuple(p.shape) for n, p in theta.items()}, args.regulator, args.bias_scale, args.rank).to(device)
    uses_images = bool(arch.image_groups) or any(arch.image_lengths)
    data = TaskData(args, pairs, model, uses_images, device)
    hierarchy = Hierarchy.load(args.hierarchy, index_sha256(args.features))
    train_tasks = TaskSampler(hierarchy, args.support, args.query, args.far_share, args.seed, "train")
    val_tasks = None
    if hierarchy.split("val"):
        val_topics = {hierarchy.leaves[i].topic for i in hierarchy.split("val")}
        far = args.far_share if len(val_topics) > 1 else 0.0  # one held-out topic: its tasks can only be near
        val_tasks = TaskSampler(hierarchy, args.support, args.query, far, args.seed + 1, "val")
    head, params, regulated = meta_inputs(model, theta, regulator, cached_image_features=not uses_images)
    optim_theta = torch.optim.Adam(theta.values(), lr=args.lr)
    optim_phi = torch.optim.Adam(regulator.parameters(), lr=args.regulator_lr)
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: cosine(s, args.steps)) for o in (optim_theta, optim_phi)]

    start = 0
    if (folder / CHECKPOINT).exists():
        state = torch.load(folder / CHECKPOINT, map_location=device, weights_only=True)
        with torch.no_grad():
            for name, value in state["prompts"].items():
                theta[name].copy_(value)
        regulator.load_state_dict(state["regulator"])
        optim_theta.load_state_dict(state["optim_theta"])
        optim_phi.load_state_dict(state["optim_phi"])
        for schedule, saved in zip(schedules, state["schedules"]):
            schedule.load_state_dict(saved)
        start = state["step"]
        logger.info("Continuing from step %d of %d (%s)", start, args.steps, folder / CHECKPOINT)

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder / "tensorboard"))

    def task_loss(sampler: TaskSampler, k: int):
        support, query = sampler.task(k)
        return meta_loss(head, params, regulated, data(support), data(query), args.inner_lr, args.second_order,
                         args.support_weight)  # fmt: skip

    for step in range(start, args.steps):
        optim_theta.zero_grad()
        optim_phi.zero_grad()
        support_losses, query_losses = [], []
        for i in range(args.tasks):
            result = task_loss(train_tasks, step * args.tasks + i)
            (result.loss / args.tasks).backward()
            support_losses.append(result.support)
            query_losses.append(result.query)
        norms = [float(torch.nn.utils.clip_grad_norm_(list(params), args.clip)) for params in (theta.values(), regulator.parameters())]
        optim_theta.step()
        optim_phi.step()
        for schedule in schedules:
            schedule.step()
        done = step + 1
        writer.add_scalar("meta/support_loss", sum(support_losses) / len(support_losses), done)
        writer.add_scalar("meta/query_loss", sum(query_losses) / len(query_losses), done)
        writer.add_scalar("meta/prompt_grad_norm", norms[0], done)
        writer.add_scalar("meta/regulator_grad_norm", norms[1], done)
        if val_tasks is not None and (done % args.val_every == 0 or done == args.steps):
            val = [task_loss(val_tasks, k).query for k in range(args.val_tasks)]
            writer.add_scalar("meta/val_query_loss", sum(val) / len(val), done)
            logger.info("step %d/%d: query loss %.4f, held-out query loss %.4f", done, args.steps,
                        sum(query_losses) / len(query_losses), sum(val) / len(val))  # fmt: skip
        if done % args.checkpoint_every == 0 or done == args.steps:
            state = {"step": done, "prompts": {n: p.detach() for n, p in theta.items()}, "regulator": regulator.state_dict(),
                     "optim_theta": optim_theta.state_dict(), "optim_phi": optim_phi.state_dict(),
                     "schedules": [s.state_dict() for s in schedules]}  # fmt: skip
            torch.save(state, folder / (CHECKPOINT + ".tmp"))
            os.replace(folder / (CHECKPOINT + ".tmp"), folder / CHECKPOINT)
        if on_step is not None:
            on_step(done)
    writer.close()
    config = {"settings": record["settings"], "inputs": record["inputs"],
              "run_sha256": hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()}  # fmt: skip
    save_meta_init(folder / OUTPUT, theta, regulator, config)
    logger.info("Wrote %s", folder / OUTPUT)
    return folder / OUTPUT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="image-caption manifest (or img2dataset folder)")
    parser.add_argument("--features", required=True, help="feature cache folder of scripts/gram/cache_features.py")
    parser.add_argument("--hierarchy", required=True, help="hierarchy JSON of scripts/gram/cluster.py")
    parser.add_argument("--arch-file", required=True, help="the prompt configuration, e.g. configs/architectures/coop_16ctx.json")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--backbone", default="ViT-B/16", help="CLIP backbone name (default ViT-B/16)")
    parser.add_argument("--clip-checkpoint", default="", help="local CLIP file (default: found by backbone name)")
    parser.add_argument("--caption-template", default="{}", help="class-prompt template around each caption (default the caption)")
    parser.add_argument("--steps", type=int, default=5000, help="outer steps (notes: 5,000-20,000)")
    parser.add_argument("--tasks", type=int, default=4, help="tasks per outer step (SUPMER: 4)")
    parser.add_argument("--support", type=int, default=32, help="pairs per support set")
    parser.add_argument("--query", type=int, default=32, help="pairs per query set")
    parser.add_argument("--far-share", type=float, default=0.3, help="share of tasks whose query leaf is under another topic")
    parser.add_argument("--inner-lr", type=float, default=0.1, help="alpha of the regulated inner step (SUPMER: 0.1)")
    parser.add_argument("--lr", type=float, default=1e-3, help="outer Adam lr of the prompts (cosine)")
    parser.add_argument("--regulator-lr", type=float, default=1e-3, help="outer Adam lr of the regulator (cosine; notes: 1e-4 for lowrank)")
    parser.add_argument("--regulator", choices=FORMS, default="elementwise")
    parser.add_argument("--bias-scale", type=float, default=0.0, help="elementwise form: scale of the rms bias (0: none)")
    parser.add_argument("--rank", type=int, default=64, help="lowrank form: rank")
    parser.add_argument("--second-order", action="store_true", help="keep the graph of the support gradient")
    parser.add_argument("--support-weight", type=float, default=0.0, help="weight of the support loss in the meta-objective")
    parser.add_argument("--clip", type=float, default=1.0, help="gradient norm clip, for prompts and regulator each")
    parser.add_argument("--val-tasks", type=int, default=16, help="held-out tasks per meta-validation")
    parser.add_argument("--val-every", type=int, default=100, help="steps between meta-validations")
    parser.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # datasets/ imports Dassl, whose WILDS module calls logging.disable(logging.WARNING): undone,
    # or this script's progress lines would not show.
    logging.disable(logging.NOTSET)
    for name in ("steps", "tasks", "support", "query", "val_tasks", "val_every", "checkpoint_every", "rank"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    try:
        meta_train(args)
    except (MetaTrainError, ManifestError, FeatureCacheError, HierarchyError, ArchitectureError, CLIPLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
